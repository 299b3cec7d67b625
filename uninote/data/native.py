"""Reading and writing the native corpus folder, with line-precise errors.

The format (see ``uninote/data/corpus.py``): ``notes.jsonl``, ``images/``, optional ``qrels.tsv``
and ``pairs.jsonl``. ``read_native`` checks every line and every photo reference and applies the
``on_error`` policy (``uninote/data/problems.py``); ``write_native`` writes a folder atomically
(temporary folder, then rename) so a crash never leaves a half-written corpus behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from uninote.data.corpus import Corpus, Pair
from uninote.data.images import check_image_file, load_image
from uninote.data.note import Note
from uninote.data.problems import Problems
from uninote.errors import ConfigError, CorpusError, ImageError

QRELS_HEADER = ("query_id", "note_id", "grade")
VALIDATE_CHOICES = ("none", "cheap", "full")
_GRADES = {"0": 0, "1": 1, "2": 2, "3": 3}
_FIELD_TYPES = {"title": str, "body": str, "tags": list, "images": list, "meta": dict}


def _note_from_record(obj, path, lineno, problems: Problems) -> Note | None:
    """Type-checked ``Note`` from one parsed JSON line, or None (problem reported)."""
    if not isinstance(obj, dict):
        problems.report("bad record", f"expected a JSON object, got {type(obj).__name__}", path, lineno)
        return None
    if "note_id" not in obj:
        problems.report("missing field", "missing required field 'note_id'", path, lineno)
        return None
    if not isinstance(obj["note_id"], str) or not obj["note_id"]:
        problems.report("wrong type", f"field 'note_id' must be a non-empty string, got {obj['note_id']!r}",
                        path, lineno)
        return None
    for name, kind in _FIELD_TYPES.items():
        value = obj.get(name)
        if value is not None and not isinstance(value, kind):
            problems.report("wrong type", f"field '{name}' must be {kind.__name__}, got "
                            f"{type(value).__name__} (note {obj['note_id']!r})", path, lineno)
            return None
    for name in ("tags", "images"):
        if not all(isinstance(v, str) for v in obj.get(name) or []):
            problems.report("wrong type", f"field '{name}' must be a list of strings "
                            f"(note {obj['note_id']!r})", path, lineno)
            return None
    return Note.from_json(obj)


def _image_problem(file: Path, validate: str) -> str | None:
    """Why a photo file is unusable, or None."""
    reason = check_image_file(file)
    if reason is None and validate == "full":
        try:
            load_image(file)
        except ImageError as exc:
            reason = str(exc).split(": ", 1)[-1]
    return reason


def _first_time(note: Note, first_line: dict[str, int], path: Path, lineno: int, problems) -> bool:
    """Record the line of ``note``'s id; False (reported as a problem) if the id was seen before."""
    if note.note_id in first_line:
        problems.report("duplicate id", f"duplicate note_id {note.note_id!r} "
                        f"(first seen on line {first_line[note.note_id]})", path, lineno)
        return False
    first_line[note.note_id] = lineno
    return True


def _check_images(note: Note, root: Path, path, lineno, problems: Problems, validate: str,
                  checked: dict[str, str | None]) -> Note:
    """Drop (skip mode) or fail on photos that are missing, truncated or unreadable; ``checked``
    remembers each photo's verdict, so a photo shared by many notes is read once."""
    kept = []
    for rel in note.images:
        if rel not in checked:
            checked[rel] = _image_problem(Path(rel) if Path(rel).is_absolute() else root / rel, validate)
        reason = checked[rel]
        if reason is None:
            kept.append(rel)
        else:
            problems.report("bad image", f"note {note.note_id!r}: image {rel!r}: {reason}", path, lineno)
    note.images = kept
    return note


def _json_lines(path: Path, problems: Problems, desc: str | None = None):
    """(line number, parsed object) for each non-blank line; malformed JSON goes to ``problems``."""
    with open(path, encoding="utf-8") as fh:
        lines = tqdm(fh, desc=desc, unit=" lines", disable=desc is None)
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                problems.report("malformed JSON", f"malformed JSON ({exc.msg} at column {exc.colno})", path, lineno)


def read_notes(root: Path, problems: Problems, validate: str = "cheap", progress: bool = False) -> list[Note]:
    """Parse ``notes.jsonl``: one note per line, unique ids, photos checked per ``validate``."""
    path = root / "notes.jsonl"
    if not path.is_file():
        raise CorpusError("no notes.jsonl here: not a native corpus folder", str(root))
    notes: list[Note] = []
    first_line: dict[str, int] = {}
    checked: dict[str, str | None] = {}
    for lineno, obj in _json_lines(path, problems, desc="notes" if progress else None):
        note = _note_from_record(obj, path, lineno, problems)
        if note is None or not _first_time(note, first_line, path, lineno, problems):
            continue
        if validate != "none":
            note = _check_images(note, root, path, lineno, problems, validate, checked)
        notes.append(note)
    return notes


def read_qrels(path: Path, known: set[str], problems: Problems) -> dict[str, dict[str, int]]:
    """Parse ``qrels.tsv`` (header ``query_id<TAB>note_id<TAB>grade``, grades 0-3)."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\r\n")
        if tuple(header.split("\t")) != QRELS_HEADER:
            problems.report("bad qrels header", f"header must be 'query_id<TAB>note_id<TAB>grade', got {header!r}",
                            path, 1)
        for lineno, line in enumerate(fh, 2):
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 3:
                if line.strip():
                    problems.report("bad qrels line", f"expected 3 tab-separated fields, got {len(parts)}", path, lineno)
                continue
            query, note, grade = parts
            if grade not in _GRADES:
                problems.report("bad grade", f"grade must be an integer 0-3, got {grade!r}", path, lineno)
                continue
            if query not in known or note not in known:
                unknown = query if query not in known else note
                problems.report("unknown note", f"unknown note id {unknown!r}", path, lineno)
                continue
            row = qrels.get(query)
            if row is None:
                row = qrels[query] = {}
            row[note] = _GRADES[grade]
    return qrels


def read_pairs(path: Path, known: set[str], problems: Problems) -> list[Pair]:
    """Parse ``pairs.jsonl``: ``{"query_id", "positive_id", "negative_ids"}`` naming known notes."""
    pairs: list[Pair] = []
    for lineno, obj in _json_lines(path, problems):
        if not isinstance(obj, dict) or not isinstance(obj.get("query_id"), str) \
                or not isinstance(obj.get("positive_id"), str):
            problems.report("bad pair", "need string fields 'query_id' and 'positive_id'", path, lineno)
            continue
        negatives = obj.get("negative_ids", [])
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            problems.report("bad pair", "'negative_ids' must be a list of strings", path, lineno)
            continue
        unknown = [i for i in [obj["query_id"], obj["positive_id"], *negatives] if i not in known]
        if unknown:
            problems.report("unknown note", f"unknown note id {unknown[0]!r}", path, lineno)
            continue
        pairs.append(Pair(obj["query_id"], obj["positive_id"], list(negatives)))
    return pairs


def read_native(root, on_error: str = "fail", validate_images: str = "cheap", progress: bool = False) -> Corpus:
    """Read a native corpus folder; see the module docstring for checks and error policy."""
    if validate_images not in VALIDATE_CHOICES:
        raise ConfigError(f"validate_images must be one of {VALIDATE_CHOICES}, got {validate_images!r}")
    root = Path(root)
    problems = Problems(on_error, source=str(root))
    notes = read_notes(root, problems, validate_images, progress)
    known = {n.note_id for n in notes}
    qrels = read_qrels(root / "qrels.tsv", known, problems) if (root / "qrels.tsv").is_file() else {}
    pairs = read_pairs(root / "pairs.jsonl", known, problems) if (root / "pairs.jsonl").is_file() else []
    problems.warn_summary()
    return Corpus(root, notes, qrels, pairs)


def load_native(root: str | Path) -> Corpus:
    """Read a native folder without checking its photos (tests feed deliberately broken ones to
    the feature pass). Everything else goes through ``uninote.data.load_corpus``."""
    return read_native(root, on_error="fail", validate_images="none")


# ----------------------------------------------------------------------------- writing


@contextmanager
def atomic_dir(final, replace: bool = True):
    """Yield a fresh temporary folder beside ``final``; on success it replaces ``final``.

    With ``replace=False`` (caches) a ``final`` that appeared meanwhile (another process finished
    first) is kept and the temporary folder discarded, so readers of it are never disturbed.

    Refuses to replace an existing non-empty folder that is not a corpus (no notes.jsonl), so a
    typo in ``--out`` cannot wipe unrelated files. On an exception the temporary folder is removed.
    """
    final = Path(final)
    if final.exists() and any(final.iterdir()) and not (final / "notes.jsonl").exists():
        raise CorpusError("folder exists and is not a corpus; refusing to overwrite it", str(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists() and not replace:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_records(out: Path, notes, qrels: dict, pairs) -> None:
    """Write notes.jsonl, and qrels.tsv / pairs.jsonl when there are any, into ``out``."""
    with open(out / "notes.jsonl", "w", encoding="utf-8") as fh:
        for note in notes:
            fh.write(json.dumps(note.to_json(), ensure_ascii=False) + "\n")
    if qrels:
        with open(out / "qrels.tsv", "w", encoding="utf-8") as fh:
            fh.write("\t".join(QRELS_HEADER) + "\n")
            for query, row in qrels.items():
                fh.writelines(f"{query}\t{note}\t{grade}\n" for note, grade in row.items())
    if pairs:
        with open(out / "pairs.jsonl", "w", encoding="utf-8") as fh:
            for p in pairs:
                fh.write(json.dumps({"query_id": p.query_id, "positive_id": p.positive_id,
                                     "negative_ids": list(p.negative_ids)}, ensure_ascii=False) + "\n")


def place_file(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` when both share a file system, else copy it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _image_dest(note: Note, i: int, rel: str, taken: set[str]) -> str:
    """Where photo ``i`` of ``note`` goes inside the written corpus (always under images/)."""
    p = PurePosixPath(rel.replace("\\", "/"))
    if not p.is_absolute() and ".." not in p.parts:
        dest = str(p) if p.parts[:1] == ("images",) else str(PurePosixPath("images", p))
    else:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in note.note_id)
        dest = f"images/{safe}_{i}{p.suffix}"
    while dest in taken:
        dest = str(PurePosixPath(dest).with_stem(PurePosixPath(dest).stem + "_"))
    taken.add(dest)
    return dest


def write_native(corpus: Corpus, out_dir, progress: bool = False) -> Path:
    """Write ``corpus`` as a native folder at ``out_dir`` (atomically), linking or copying photos."""
    out_dir = Path(out_dir)
    if out_dir.resolve() == corpus.root.resolve():
        raise CorpusError("cannot write a corpus onto the folder it was read from", str(out_dir))
    taken: set[str] = set()
    with atomic_dir(out_dir) as tmp:
        written = []
        for note in tqdm(corpus.notes, desc="writing", unit=" notes", disable=not progress):
            images = []
            for i, rel in enumerate(note.images):
                dest = _image_dest(note, i, rel, taken)
                place_file(corpus.image_path(note, i), tmp / dest)
                images.append(dest)
            written.append(Note(note.note_id, note.title, note.body, list(note.tags), images, dict(note.meta)))
        write_records(tmp, written, corpus.qrels, corpus.pairs)
    return out_dir
