"""The Qilin notes table (real Xiaohongshu notes; Hub dataset ``THUIR/Qilin``) as UniNote notes.

One row per note: ``note_idx`` becomes ``note_id``; ``note_title`` the title; ``note_content`` the
body with its ``#topic[话题]#`` hashtags moved into ``tags``; ``image_path`` (a printed numpy
array of relative paths, several per note) the photos, resolved under ``image_root`` (default:
the table's folder). Taxonomy ids, note type and engagement counters go to ``meta``; the
precomputed ``note_embedding`` is dropped.

Photos that are not on disk are left out; a note with none of its photos is loaded text-only, and
ONE warning counts such notes (the Qilin release hosts photos separately).

From the Hub (``download``), only the notes table and image folders are fetched; ``find_notes_tables``
then picks the table with Qilin's note columns inside the snapshot (any subfolder; one file, or the
shards of one table in order), and image
paths resolve under the snapshot root. The release layout is ASSUMED (it cannot be checked offline):
``HUB_PATTERNS`` lists what is fetched.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import huggingface_hub

from uninote.data.note import Note
from uninote.data.problems import Problems
from uninote.errors import CorpusError

SOURCE_TAG = "qilin"
HUB_REPO_ID = "THUIR/Qilin"
TEXT_COLUMNS = ("note_title", "note_content")
# what a Hub snapshot fetches: the notes table (at the root or under notes/) and image folders, never
# the search/recommendation logs; the real release layout is assumed, not verified (no internet here)
HUB_PATTERNS = ["*.md", "notes*.csv", "notes*.parquet", "notes/*", "image/*", "images/*"]
DROPPED_COLUMNS = {"note_title", "note_content", "note_idx", "image_path", "note_embedding"}
_TOPIC = re.compile(r"#([^#\[\]\n]{1,64}?)\[话题\]#")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def is_qilin_table(path) -> bool:
    """True when a .csv or .parquet file has Qilin's ``note_title`` and ``note_content`` columns."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # pyarrow (about 0.4 s to import): only parquet tables need it

            names = set(pq.read_schema(path).names)
        else:
            with open(path, encoding="utf-8", newline="") as fh:
                names = set(next(csv.reader(fh), []))
    except Exception:
        return False
    return set(TEXT_COLUMNS) <= names


def download(repo_id: str = HUB_REPO_ID, revision: str | None = None) -> Path:
    """Fetch the Hub dataset's notes table and image folders (cached by huggingface_hub); returns the
    local snapshot folder."""
    folder = huggingface_hub.snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision,
                                               allow_patterns=HUB_PATTERNS)
    return Path(folder)


def find_notes_tables(folder) -> list[Path]:
    """The Qilin notes table under ``folder``: one file, or the shards of one table in shard order.

    Shards are several tables with Qilin's note columns in one folder whose names differ only in
    their numbers (``train-00000-of-00002.parquet``, ``train-00001-of-00002.parquet``). Raises
    ``CorpusError`` naming the folder and what was found when no table, or several unrelated ones, match.
    """
    folder = Path(folder)
    candidates = sorted(f for f in folder.rglob("*") if f.suffix in (".csv", ".parquet") and f.is_file()
                        and not any(part.startswith(".") for part in f.relative_to(folder).parts))
    matches = [f for f in candidates if is_qilin_table(f)]
    if len(matches) == 1 or (matches and _shards_of_one_table(matches)):
        return matches
    shown = ", ".join(str(f.relative_to(folder)) for f in (matches or candidates)[:10]) or "none"
    if not matches:
        raise CorpusError(f"no Qilin notes table (.csv/.parquet with {' and '.join(TEXT_COLUMNS)} columns) "
                          f"in this Hub snapshot; .csv/.parquet files found: {shown}", str(folder))
    raise CorpusError(f"{len(matches)} tables with Qilin note columns in this Hub snapshot ({shown}) that are "
                      "not shards of one table; give the path of the one to load as the source", str(folder))


def _shards_of_one_table(paths: list[Path]) -> bool:
    """True when the files share a folder and suffix and their names differ only in digits."""
    pattern = {(f.parent, f.suffix, re.sub(r"\d+", "#", f.stem)) for f in paths}
    return len(pattern) == 1 and any(ch.isdigit() for ch in paths[0].stem)


def extract_topics(content: str) -> tuple[str, list[str]]:
    """Split ``#topic[话题]#`` hashtags out of a note body: ``(body_without_tags, tags)``.

    >>> extract_topics("好吃 #腊肠[话题]# #美食[话题]# ")
    ('好吃', ['腊肠', '美食'])
    """
    tags: list[str] = []
    for match in _TOPIC.finditer(content):
        tag = match.group(1).strip()
        if tag and tag not in tags:
            tags.append(tag)
    body = _TOPIC.sub("", content)
    body = re.sub(r"[ \t]+\n", "\n", body)
    return body.strip(), tags


def parse_image_paths(value) -> list[str]:
    """Image paths from a printed numpy array (``"['a.jpg' 'b.jpg'\\n 'c.jpg']"``), a JSON/Python
    list string, or an actual list; empty for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if not isinstance(value, str):
        return [str(v) for v in value if str(v).strip()]
    text = value.strip()
    quoted = [a if a else b for a, b in _QUOTED.findall(text)]
    if quoted:
        return [q.strip() for q in quoted if q.strip()]
    inner = text.strip("[]")
    return [p for p in re.split(r"[\s,]+", inner) if p]


def _number(value):
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    return value


def _rows(path: Path):
    """Yield ``(line_number, row_dict)``; line numbers are physical CSV lines (rows for parquet)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # pyarrow: see is_qilin_table

        for i, row in enumerate(pq.read_table(path).to_pylist(), 2):
            yield i, row
        return
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        start = 2
        for row in reader:
            yield start, row
            start = reader.line_num + 1


def _note_from_row(row: dict, path: Path, lineno: int, root: Path, problems: Problems):
    """``(note, n_missing_photos, n_listed_photos)`` for one table row, or None (problem reported)."""
    raw_id = _number(row.get("note_idx"))
    if raw_id is None:
        problems.report("missing field", "missing 'note_idx'", path, lineno)
        return None
    title, content = row.get("note_title"), row.get("note_content")
    if not isinstance(title or "", str) or not isinstance(content or "", str):
        problems.report("wrong type", "note_title and note_content must be text", path, lineno)
        return None
    body, tags = extract_topics(content or "")
    paths = parse_image_paths(row.get("image_path"))
    present = [str((root / p).resolve()) for p in paths if (root / p).is_file()]
    meta = {"source": SOURCE_TAG, "image_paths": paths}
    meta.update({k: (v if k.endswith("_id") else _number(v))  # ids like "5e12..." are not numbers
                 for k, v in row.items() if k not in DROPPED_COLUMNS and k is not None})
    note = Note(str(raw_id), title=(title or "").strip(), body=body, tags=tags, images=present, meta=meta)
    return note, len(paths) - len(present), len(paths)


def _shard_rows(paths: list[Path]):
    """``(path, line_number, row)`` over every shard in order."""
    for path in paths:
        for lineno, row in _rows(path):
            yield path, lineno, row


def read_qilin(path, problems: Problems, image_root=None, limit: int | None = None) -> tuple[list[Note], list[str]]:
    """Read a Qilin notes table (one file, or a list of its shards) into ``(notes, notices)``.

    Notices are warning texts. Image paths resolve under ``image_root`` (default: the table's folder);
    a ``note_idx`` seen before, in any shard, is a reported duplicate.
    """
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    root = Path(image_root) if image_root is not None else paths[0].parent
    notes: list[Note] = []
    seen: dict[str, str] = {}
    text_only = partial = 0
    for shard, lineno, row in _shard_rows(paths):
        if limit is not None and len(notes) >= limit:
            break
        result = _note_from_row(row, shard, lineno, root, problems)
        if result is None:
            continue
        note, missing, total = result
        if note.note_id in seen:
            problems.report("duplicate id", f"duplicate note_idx {note.note_id} (first on {seen[note.note_id]})",
                            shard, lineno)
            continue
        seen[note.note_id] = f"line {lineno}" if len(paths) == 1 else f"{shard.name} line {lineno}"
        text_only += not note.images
        partial += 0 < missing < total
        notes.append(note)
    notices = []
    if text_only:
        notices.append(f"qilin: {text_only} of {len(notes)} notes have no image files under {root}; "
                       "loaded as text-only")
    if partial:
        notices.append(f"qilin: {partial} of {len(notes)} notes miss some of their image files under {root}")
    return notes, notices
