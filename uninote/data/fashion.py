"""The fashion product catalogue (Hugging Face dataset schema) as a UniNote corpus.

Source: a folder holding ``data/*.parquet`` with the schema of the Hub dataset
``ashraq/fashion-product-images-small`` (columns id, gender, masterCategory, subCategory,
articleType, baseColour, season, year, usage, productDisplayName, image{bytes,path}), a single
such parquet file, or the Hub repo id itself (fetched with ``huggingface_hub.snapshot_download``).

Each product becomes one note: ``note_id = str(id)``, ``title = productDisplayName``, empty body
and tags (the catalogue attributes are the relevance labels, so they must not leak into the text
a model reads; they go to ``meta``), one photo ``images/<id>.jpg`` written from the parquet bytes.

Relevance (shared/data/README.md), reusable as ``fashion_grade``: 3 same articleType and same
baseColour; 2 same articleType; 1 same subCategory; 0 otherwise. A missing attribute matches
nothing. ``derive_relevance`` turns that rule into qrels (a seeded sample of query notes, each
listing every other note with grade >= 1) and training pairs (one positive of the best available
grade, up to four hard negatives of strictly lower grade, then random ones).
"""

from __future__ import annotations

import math
from pathlib import Path

import huggingface_hub
import numpy as np
from tqdm.auto import tqdm

from uninote.data.corpus import Pair
from uninote.data.images import check_image_bytes, sniff_format
from uninote.data.note import Note
from uninote.data.problems import Problems

HUB_REPO_ID = "ashraq/fashion-product-images-small"
SOURCE_TAG = "fashion"
ATTRIBUTES = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage")
REQUIRED_COLUMNS = {"id", "articleType", "subCategory", "baseColour", "productDisplayName", "image"}
N_NEGATIVES = 4
_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}


def fashion_grade(meta_a: dict, meta_b: dict) -> int:
    """Graded relevance 0-3 between two catalogue items from their attributes (pure function).

    >>> fashion_grade({"articleType": "Shirts", "baseColour": "Navy Blue", "subCategory": "Topwear"},
    ...               {"articleType": "Shirts", "baseColour": "Navy Blue", "subCategory": "Topwear"})
    3
    """
    def same(key):
        a, b = meta_a.get(key), meta_b.get(key)
        return a is not None and a == b

    if same("articleType"):
        return 3 if same("baseColour") else 2
    return 1 if same("subCategory") else 0


def is_fashion_parquet(path) -> bool:
    """True when a parquet file has the fashion catalogue's columns."""
    import pyarrow.parquet as pq  # pyarrow (about 0.4 s to import): only parquet sources need it

    try:
        names = set(pq.read_schema(path).names)
    except Exception:
        return False
    return REQUIRED_COLUMNS <= names


def parquet_files(source) -> list[Path]:
    """The parquet files of a local fashion source (folder with data/*.parquet, or one file)."""
    path = Path(source)
    if path.is_file():
        return [path]
    files = sorted((path / "data").glob("*.parquet")) or sorted(path.glob("*.parquet"))
    return [f for f in files if is_fashion_parquet(f)]


def download(repo_id: str = HUB_REPO_ID, revision: str | None = None) -> Path:
    """Fetch the Hub dataset's parquet files (cached by huggingface_hub); returns the local folder."""
    folder = huggingface_hub.snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision,
                                               allow_patterns=["data/*.parquet", "*.md"])
    return Path(folder)


def _clean(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def read_catalogue(files: list[Path], out: Path, problems: Problems, limit: int | None = None,
                   progress: bool = False) -> list[Note]:
    """Stream the parquet rows into notes, writing each photo to ``out/images/<id>.<ext>``."""
    import pyarrow.parquet as pq  # pyarrow: see is_fashion_parquet

    (out / "images").mkdir(parents=True, exist_ok=True)
    notes: list[Note] = []
    seen: dict[str, int] = {}
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    bar = tqdm(total=min(total, limit or total), desc="fashion", unit=" items", disable=not progress)
    for file in files:
        row = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=1000):
            for rec in batch.to_pylist():
                row += 1
                if limit is not None and len(notes) >= limit:
                    bar.close()
                    return notes
                note = _note_from_row(rec, file, row, out, seen, problems)
                if note is not None:
                    notes.append(note)
                bar.update(1)
    bar.close()
    return notes


def _note_from_row(rec: dict, file: Path, row: int, out: Path, seen: dict, problems: Problems) -> Note | None:
    if rec.get("id") is None:
        problems.report("missing field", f"row {row}: missing 'id'", file, row)
        return None
    note_id = str(_clean(rec["id"]))
    if note_id in seen:
        problems.report("duplicate id", f"row {row}: duplicate id {note_id} (first at row {seen[note_id]})", file, row)
        return None
    image = rec.get("image") or {}
    data = image.get("bytes") if isinstance(image, dict) else None
    reason = "no image bytes" if not data else check_image_bytes(data)
    if reason:
        problems.report("bad image", f"row {row} (id {note_id}): {reason}", file, row)
        return None
    seen[note_id] = row
    rel = f"images/{note_id}{_EXT[sniff_format(data[:16])]}"
    (out / rel).write_bytes(data)
    meta = {"source": SOURCE_TAG, **{k: _clean(rec.get(k)) for k in ATTRIBUTES}}
    return Note(note_id, title=rec.get("productDisplayName") or "", body="", tags=[], images=[rel], meta=meta)


def _codes(notes: list[Note], key: str) -> np.ndarray:
    """Integer code per note for one attribute; -1 for missing (matches nothing)."""
    table: dict = {}
    return np.array([-1 if (v := n.meta.get(key)) is None else table.setdefault(v, len(table)) for n in notes],
                    dtype=np.int64)


def grade_matrix_row(i: int, sub: np.ndarray, art: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Grades of note ``i`` against every note (vectorised ``fashion_grade``); self included."""
    same_sub = (sub == sub[i]) & (sub[i] >= 0)
    same_art = (art == art[i]) & (art[i] >= 0)
    same_col = (col == col[i]) & (col[i] >= 0)
    grades = same_sub.astype(np.int8)
    grades[same_art] = 2
    grades[same_art & same_col] = 3
    return grades


def _negatives(grades: np.ndarray, best: int, i: int, rng: np.random.Generator) -> list[int]:
    """Up to N_NEGATIVES notes graded strictly below ``best``: hard ones (1-2) first, then random."""
    chosen: list[int] = []
    # with a grade-3 positive, half from grade 2 (same article type), the rest from grade 1
    quotas = [(2, N_NEGATIVES // 2), (1, N_NEGATIVES)] if best == 3 else [(1, N_NEGATIVES)]
    for grade, quota in quotas:
        pool = np.flatnonzero(grades == grade)
        take = min(len(pool), quota, N_NEGATIVES - len(chosen))
        chosen += rng.choice(pool, size=take, replace=False).tolist() if take else []
    if best == 3 and len(chosen) < N_NEGATIVES:  # grade 1 ran short: top up from grade 2
        pool = np.setdiff1d(np.flatnonzero(grades == 2), chosen)
        take = min(len(pool), N_NEGATIVES - len(chosen))
        chosen += rng.choice(pool, size=take, replace=False).tolist() if take else []
    pool = np.flatnonzero(grades == 0)
    take = min(len(pool), N_NEGATIVES - len(chosen))
    chosen += rng.choice(pool, size=take, replace=False).tolist() if take else []
    return chosen


def derive_relevance(notes: list[Note], max_queries: int = 500, seed: int = 0):
    """Qrels and training pairs for catalogue notes from ``fashion_grade`` (see module docstring).

    Returns ``(qrels, pairs)``: ``qrels[query_id][note_id] = grade`` for a seeded sample of
    ``max_queries`` query notes that have at least one relevant note (every other note with
    grade >= 1 is listed; grade 0 implied), and one
    ``Pair`` per note that has a grade-3 partner (else grade-2). Deterministic for a given seed.
    """
    ids = [n.note_id for n in notes]
    sub, art, col = (_codes(notes, k) for k in ("subCategory", "articleType", "baseColour"))
    rng = np.random.default_rng(seed)
    # only notes with at least one relevant partner (another note of their sub-category) can be queries
    sizes = np.bincount(sub[sub >= 0], minlength=1)
    eligible = np.flatnonzero((sub >= 0) & (sizes[np.maximum(sub, 0)] > 1))
    n_queries = min(max_queries, len(eligible))
    queries = np.sort(rng.choice(eligible, size=n_queries, replace=False)) if n_queries else []
    qrels: dict[str, dict[str, int]] = {}
    for q in queries:
        grades = grade_matrix_row(int(q), sub, art, col)
        grades[q] = 0
        hits = np.flatnonzero(grades)
        qrels[ids[q]] = {ids[j]: int(grades[j]) for j in hits}
    pairs: list[Pair] = []
    for i in range(len(notes)):
        grades = grade_matrix_row(i, sub, art, col)
        grades[i] = -1  # never pair a note with itself
        best = 3 if (grades == 3).any() else 2 if (grades == 2).any() else 0
        if not best:
            continue
        positive = int(rng.choice(np.flatnonzero(grades == best)))
        negatives = _negatives(grades, best, i, rng)
        pairs.append(Pair(ids[i], ids[positive], [ids[j] for j in negatives]))
    return qrels, pairs
