"""``load_corpus``: one entry point for every supported source.

Sources and how they are recognised (``format=`` overrides detection):

- ``native``  a folder with ``notes.jsonl`` (read directly).
- ``fashion`` a folder with ``data/*.parquet`` in the Hub schema of
  ``ashraq/fashion-product-images-small``, one such parquet file, or a Hub repo id.
- ``qilin``   a Qilin notes table (``.csv`` or ``.parquet`` with ``note_title``/``note_content``), or a
  Hub repo id (``THUIR/Qilin`` is detected; any other id needs ``format="qilin"``): the snapshot's
  notes table (one file or its shards) is read, with image paths relative to the snapshot folder.

Non-native sources are materialised ONCE into a native folder under the cache,
``$UNINOTE_CACHE/corpora/<format>-<fingerprint>/`` (fingerprint: source path, file sizes and
mtimes, and the options), written atomically, then read by the same native reader as any corpus.
Warnings raised while materialising (skipped rows, text-only notes) are kept in ``source.json``
next to the corpus and shown again on every cached load.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from uninote.data import fashion, qilin
from uninote.data.corpus import Corpus
from uninote.data.lazy import LAZY_MIN_BYTES, cache_root, read_lazy
from uninote.data.native import atomic_dir, read_native, write_native, write_records
from uninote.data.problems import Problems, check_on_error, warn
from uninote.data.split import subset_corpus
from uninote.errors import ConfigError, CorpusError

FORMATS = ("native", "fashion", "qilin")
CACHE_LAYOUT_VERSION = 2  # bump when an adapter's output changes, so stale caches are rebuilt
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def corpus_location(source) -> str:
    """Where ``source`` is, for records other processes read (a model version's corpus): the
    absolute path of a local file or folder, else the source as given (a Hub repo id)."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)


def detect_format(source) -> str:
    """Which adapter reads ``source``; raises ``CorpusError`` saying what was looked for."""
    path = Path(source)
    if path.is_dir():
        if (path / "notes.jsonl").is_file():
            return "native"
        if fashion.parquet_files(path):
            return "fashion"
        raise CorpusError("folder has neither notes.jsonl (native corpus) nor data/*.parquet in the fashion "
                          "catalogue schema", str(path))
    if path.is_file():
        if path.suffix == ".parquet" and fashion.is_fashion_parquet(path):
            return "fashion"
        if path.suffix in (".csv", ".parquet") and qilin.is_qilin_table(path):
            return "qilin"
        raise CorpusError("not a recognised corpus file (expected a fashion catalogue parquet, or a Qilin "
                          "notes table .csv/.parquet with note_title and note_content columns)", str(path))
    if _HUB_ID.match(str(source)):
        return "qilin" if str(source).lower() == qilin.HUB_REPO_ID.lower() else "fashion"
    raise CorpusError("no such file or folder, and not a Hugging Face Hub repo id (owner/name)", str(source))


def _fingerprint(fmt: str, files: list[Path], options: dict) -> str:
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps({"v": CACHE_LAYOUT_VERSION, "format": fmt, "files": stats, "options": options},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _source_files(fmt: str, source, revision: str | None) -> tuple[list[Path], str, Path | None]:
    """Local files backing a non-native source (downloading Hub repos), a display name, and the
    Hub snapshot folder (None for local sources)."""
    path = Path(source)
    is_hub = not path.exists() and bool(_HUB_ID.match(str(source)))
    name = str(source).rstrip("/").split("/")[-1]
    if fmt == "fashion":
        if not path.exists() and not is_hub:
            raise CorpusError("no such file or folder, and not a Hub repo id", str(source))
        snapshot = fashion.download(str(source), revision) if is_hub else None
        files = fashion.parquet_files(snapshot or path)
        if not files:
            raise CorpusError("no parquet files in the fashion catalogue schema here", str(snapshot or path))
        return files, name, snapshot
    if is_hub:
        snapshot = qilin.download(str(source), revision)
        return qilin.find_notes_tables(snapshot), name, snapshot
    if not path.is_file():
        raise CorpusError("Qilin notes table not found (give the path of notes .csv or .parquet, or a Hub "
                          "repo id)", str(source))
    return [path], path.stem, None


def _materialise(fmt: str, files: list[Path], out: Path, problems: Problems, options: dict, progress: bool):
    if fmt == "fashion":
        notes = fashion.read_catalogue(files, out, problems, options["limit"], progress)
        qrels, pairs = fashion.derive_relevance(notes, options["max_queries"], options["seed"])
        write_records(out, notes, qrels, pairs)
        return []
    notes, notices = qilin.read_qilin(files, problems, options["image_root"], options["limit"])
    write_records(out, notes, {}, [])
    return notices


def _read(folder, on_error: str, validate_images: str, progress: bool, lazy: bool | None) -> Corpus:
    """A native folder, eagerly or (``lazy``; None: when notes.jsonl is ``LAZY_MIN_BYTES`` or more)
    lazily (``uninote.data.lazy``)."""
    if lazy is None:
        lazy = (Path(folder) / "notes.jsonl").stat().st_size >= LAZY_MIN_BYTES
    return (read_lazy if lazy else read_native)(folder, on_error, validate_images, progress)


def _load_cached(fmt: str, source, on_error: str, options: dict, validate_images: str, progress: bool,
                 revision: str | None = None, lazy: bool | None = False) -> Corpus:
    files, name, snapshot = _source_files(fmt, source, revision)
    if fmt == "qilin" and snapshot is not None and options["image_root"] is None:
        options = {**options, "image_root": str(snapshot.resolve())}  # Hub image paths are snapshot-relative
    folder = cache_root() / "corpora" / f"{fmt}-{_fingerprint(fmt, files, {**options, 'on_error': on_error})}"
    if not (folder / "source.json").is_file():
        problems = Problems(on_error, source=str(files[0]))
        started = time.perf_counter()
        with atomic_dir(folder, replace=False) as tmp:
            notices = _materialise(fmt, files, tmp, problems, options, progress)
            if problems.total:
                notices = [problems.summary(), *notices]
            record = {"format": fmt, "source": str(source), "files": [str(f) for f in files], "options": options,
                      "on_error": on_error, "name": name, "notices": notices,
                      "seconds": round(time.perf_counter() - started, 2)}
            (tmp / "source.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    record = json.loads((folder / "source.json").read_text(encoding="utf-8"))
    for notice in record.get("notices", []):
        warn(notice)
    corpus = _read(folder, on_error, validate_images, progress, lazy)
    corpus.name = record.get("name") or name
    return corpus


def load_corpus(source, format: str | None = None, on_error: str = "fail", *, limit: int | None = None,
                max_queries: int = 500, seed: int = 0, image_root=None, validate_images: str = "cheap",
                progress: bool = False, revision: str | None = None, lazy: bool | None = False) -> Corpus:
    """Load any supported corpus source as a ``Corpus`` (see the module docstring).

    Args:
        source: native folder, fashion folder / parquet file / Hub repo id, or Qilin table path / Hub
            repo id (``THUIR/Qilin`` is detected; other ids need ``format="qilin"``).
        format: ``"native"``, ``"fashion"`` or ``"qilin"``; detected from the files when None.
        on_error: ``"fail"`` raises ``CorpusError`` (file and line) on the first problem;
            ``"skip"`` drops bad records and warns once with counts.
        limit: keep only the first N notes (fashion: before qrels/pairs are derived).
        max_queries, seed: fashion qrels sample size and the seed for qrels/pairs sampling.
        image_root: Qilin only, the folder the table's relative image paths live under
            (default: the table's folder; for a Hub id, the snapshot folder).
        validate_images: ``"cheap"`` (header and end-marker check), ``"full"`` (decode every
            photo), or ``"none"``.
        progress: show tqdm bars.
        revision: Hub sources only, the branch, tag or commit to download (default: the main branch).
        lazy: read the notes on demand from an index built at the first open (``uninote.data.lazy``:
            same notes, same checks); None: when notes.jsonl is ``LAZY_MIN_BYTES`` or more. Not with
            ``limit``.
    """
    check_on_error(on_error)
    fmt = format or detect_format(source)
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {FORMATS}, got {fmt!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of notes, got {limit}")
    if fmt == "native":
        if not (Path(source) / "notes.jsonl").is_file():
            raise CorpusError("no notes.jsonl here: not a native corpus folder", str(source))
        corpus = _read(source, on_error, validate_images, progress, False if limit is not None else lazy)
        if limit is not None:
            corpus = subset_corpus(corpus, [n.note_id for n in corpus.notes[:limit]])
        return corpus
    options = {"limit": limit, "max_queries": max_queries, "seed": seed,
               "image_root": None if image_root is None else str(Path(image_root).resolve())}
    return _load_cached(fmt, source, on_error, options, validate_images, progress, revision,
                        False if limit is not None else lazy)


def write_corpus(corpus: Corpus, out_dir, progress: bool = False) -> Path:
    """Write ``corpus`` as a native folder (notes.jsonl, images/, qrels.tsv, pairs.jsonl), atomically.

    Photos are hard-linked when possible, else copied; an existing corpus at ``out_dir`` is
    replaced, any other non-empty folder is refused.
    """
    return write_native(corpus, out_dir, progress)
