"""A big native corpus read on demand: ``LazyCorpus`` (what ``load_corpus(..., lazy=...)`` returns).

A million-line ``notes.jsonl`` takes tens of seconds to parse into ``Note`` objects and about a
gigabyte to hold. A lazy corpus parses it once, with exactly the checks of ``read_native`` (types,
duplicate ids, photos), and writes a compact index of numpy arrays under
``$UNINOTE_CACHE/corpora/index-<fingerprint>/`` (fingerprint: the file's path, size and mtime, and
the reading options):

    lines.npy       int64 [n, 2]: byte offset and length of each kept note's line
    ids.npy         the note ids, sorted (numpy str), and order.npy: their corpus positions
    fixed.json      notes whose photo list the checks changed (skip mode), as written
    vocabulary.npy, bounds.npy, postings.npy   the catalogue's word index (``word_index``)
    photo_notes.npy positions of the first note of each distinct first photo (thumbnails)
    index.json      counts, skipped problems (warned again on every open), written last

Later opens map those arrays (nothing per note is read) and read a note's line from
``notes.jsonl`` when it is asked for (``corpus.get``, ``corpus.notes[i]``, iteration). A note read
lazily equals the note an eager ``read_native`` gives. qrels and pairs are read eagerly.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from uninote.data.corpus import Corpus
from uninote.data.native import (_check_images, _first_time, _note_from_record, atomic_dir, read_pairs,
                                 read_qrels)
from uninote.data.note import Note
from uninote.data.problems import Problems, warn
from uninote.data.words import word_index
from uninote.errors import CorpusError

INDEX_VERSION = 1
LAZY_MIN_BYTES = 64 * 2**20  # load_corpus(lazy=None): a notes.jsonl this big (~200k notes) is read lazily


def cache_root() -> Path:
    return Path(os.environ.get("UNINOTE_CACHE") or Path.home() / ".cache" / "uninote")


def fingerprint(root: Path, on_error: str, validate_images: str) -> str:
    """What the index depends on: the notes file (path, size, mtime) and the reading options."""
    path = (Path(root) / "notes.jsonl").resolve()
    st = path.stat()
    blob = json.dumps({"v": INDEX_VERSION, "file": str(path), "size": st.st_size, "mtime": st.st_mtime_ns,
                       "on_error": on_error, "validate": validate_images}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _build_index(root: Path, out: Path, on_error: str, validate_images: str, progress: bool) -> None:
    """One pass over notes.jsonl with ``read_native``'s checks; writes the index files into ``out``."""
    path = root / "notes.jsonl"
    problems = Problems(on_error, source=str(root))
    spans, ids, fixed, first_line = [], [], {}, {}
    checked: dict[str, str | None] = {}
    photo_first: dict[str, int] = {}

    def kept_notes():
        offset = 0
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                start, offset = offset, offset + len(raw)
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    where = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc.reason
                    problems.report("malformed JSON", f"malformed JSON ({where})", path, lineno)
                    continue
                note = _note_from_record(obj, path, lineno, problems)
                if note is None or not _first_time(note, first_line, path, lineno, problems):
                    continue
                before = list(note.images)
                if validate_images != "none":
                    note = _check_images(note, root, path, lineno, problems, validate_images, checked)
                i = len(spans)
                spans.append((start, len(raw)))
                ids.append(note.note_id)
                if note.images != before:
                    fixed[str(i)] = note.to_json()
                if note.images and note.images[0] not in photo_first:
                    photo_first[note.images[0]] = i
                yield note

    vocabulary, bounds, postings = word_index(tqdm(kept_notes(), desc="indexing notes", unit=" notes",
                                                   disable=not progress))
    order = np.argsort(np.array(ids, dtype=str), kind="stable")
    np.save(out / "lines.npy", np.array(spans, np.int64).reshape(-1, 2))
    np.save(out / "ids.npy", np.array(ids, dtype=str)[order])
    np.save(out / "order.npy", order.astype(np.int64))
    np.save(out / "vocabulary.npy", vocabulary)
    np.save(out / "bounds.npy", bounds)
    np.save(out / "postings.npy", postings)
    np.save(out / "photo_notes.npy", np.array(list(photo_first.values()), np.int64))
    (out / "fixed.json").write_text(json.dumps(fixed, ensure_ascii=False), encoding="utf-8")
    record = {"version": INDEX_VERSION, "notes": len(ids), "source": str(path.resolve()),
              "problems": problems.summary() if problems.total else ""}
    (out / "index.json").write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")


def open_index(root, on_error: str = "fail", validate_images: str = "cheap", progress: bool = False) -> Path:
    """The index folder of ``root``'s notes.jsonl, built first when missing (atomically)."""
    root = Path(root)
    key = fingerprint(root, on_error, validate_images)
    folder = cache_root() / "corpora" / f"index-{key}"
    if not (folder / "index.json").is_file():
        with atomic_dir(folder, replace=False) as tmp:
            _build_index(root, tmp, on_error, validate_images, progress)
    return folder


class LazyNotes(Sequence):
    """The notes of a lazy corpus, in corpus order: each read from its line when asked for (a
    few thousand recently read ones are kept)."""

    CACHED = 4096

    def __init__(self, path: Path, lines: np.ndarray, fixed: dict[str, dict]):
        self._path, self._lines, self._fixed = path, lines, fixed
        self._fd: int | None = None
        self._cache: OrderedDict[int, Note] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lines)

    def __repr__(self) -> str:
        return f"LazyNotes({self._path}, {len(self):,} notes)"

    def _read(self, i: int) -> Note:
        if str(i) in self._fixed:
            return Note.from_json(self._fixed[str(i)])
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDONLY)
            fd = self._fd
        start, size = (int(x) for x in self._lines[i])
        raw = os.pread(fd, size, start)
        try:
            return Note.from_json(json.loads(raw))
        except (ValueError, KeyError) as exc:
            raise CorpusError(f"line of note {i + 1} changed since the corpus was indexed ({exc}); "
                              "its index is rebuilt at the next open", str(self._path)) from None

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"note position {i} out of range 0..{len(self) - 1}")
        with self._lock:
            note = self._cache.get(i)
            if note is not None:
                self._cache.move_to_end(i)
                return note
        note = self._read(i)
        with self._lock:
            self._cache[i] = note
            if len(self._cache) > self.CACHED:
                self._cache.popitem(last=False)
        return note

    def __iter__(self):
        """Every note, read in file order (one pass over the file, nothing kept)."""
        with open(self._path, "rb") as fh:
            for i, (start, size) in enumerate(self._lines):
                if str(i) in self._fixed:
                    yield Note.from_json(self._fixed[str(i)])
                    continue
                fh.seek(int(start))
                yield Note.from_json(json.loads(fh.read(int(size))))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LazyIds:
    """Membership and position of note ids by binary search in the sorted id array."""

    def __init__(self, sorted_ids: np.ndarray, order: np.ndarray):
        self._ids, self._order = sorted_ids, order

    def position(self, note_id) -> int | None:
        if not isinstance(note_id, str) or not len(self._ids):
            return None
        i = int(np.searchsorted(self._ids, note_id))
        if i < len(self._ids) and self._ids[i] == note_id:
            return int(self._order[i])
        return None

    def __contains__(self, note_id) -> bool:
        return self.position(note_id) is not None

    def __len__(self) -> int:
        return len(self._ids)


class LazyCorpus(Corpus):
    """A ``Corpus`` whose notes are read on demand from an index (see the module docstring)."""

    def __init__(self, root, index_dir: Path, name: str = ""):
        self.root = Path(root)
        self.index_dir = Path(index_dir)
        load = lambda f: np.load(self.index_dir / f, mmap_mode="r")  # noqa: E731
        self.ids = LazyIds(load("ids.npy"), load("order.npy"))
        fixed = json.loads((self.index_dir / "fixed.json").read_text(encoding="utf-8"))
        self.notes = LazyNotes(self.root / "notes.jsonl", load("lines.npy"), fixed)
        self.word_index = (load("vocabulary.npy"), load("bounds.npy"), load("postings.npy"))
        self._photo_notes = load("photo_notes.npy")
        self.fingerprint = self.index_dir.name.removeprefix("index-")
        self.qrels, self.pairs = {}, []
        self.name = name or self.root.name

    def __repr__(self) -> str:
        return f"LazyCorpus({self.root}, {len(self):,} notes)"

    def __contains__(self, note_id: str) -> bool:
        return note_id in self.ids

    def index_of(self, note_id: str) -> int:
        i = self.ids.position(note_id)
        if i is None:
            raise KeyError(note_id)
        return i

    def get(self, note_id: str) -> Note:
        return self.notes[self.index_of(note_id)]

    def photo_notes(self) -> list[Note]:
        """The first note of each distinct first photo, in corpus order."""
        return [self.notes[int(i)] for i in self._photo_notes]


def read_lazy(root, on_error: str = "fail", validate_images: str = "cheap", progress: bool = False) -> Corpus:
    """``read_native``'s corpus, its notes read on demand from an index built at the first open."""
    root = Path(root)
    folder = open_index(root, on_error, validate_images, progress)
    corpus = LazyCorpus(root, folder)
    record = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    problems = Problems(on_error, source=str(root))
    if (root / "qrels.tsv").is_file():
        corpus.qrels = read_qrels(root / "qrels.tsv", corpus.ids, problems)
    if (root / "pairs.jsonl").is_file():
        corpus.pairs = read_pairs(root / "pairs.jsonl", corpus.ids, problems)
    if record.get("problems") or problems.total:
        warn("; ".join(t for t in (record.get("problems"), problems.summary() if problems.total else "") if t))
    return corpus
