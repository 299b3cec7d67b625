"""Builders for small synthetic corpora and images used by the data tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(seed: int = 0, size=(32, 24), fmt: str = "JPEG") -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def note_record(i: int, **overrides) -> dict:
    rec = {"note_id": f"n{i}", "title": f"title {i}", "body": f"body {i}", "tags": [f"t{i % 2}"],
           "images": [f"images/n{i}.jpg"], "meta": {"k": i}}
    rec.update(overrides)
    return rec


def make_native(root: Path, n: int = 5, qrels: str | None = None, pairs: list[dict] | None = None,
                records: list | None = None) -> Path:
    """A native corpus of ``n`` notes n0..n{n-1}, each with one valid JPEG; lines may be overridden.

    ``records`` entries replace the default lines; a str entry is written verbatim (bad JSON tests).
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for i in range(n):
        (root / "images" / f"n{i}.jpg").write_bytes(jpeg_bytes(i))
    lines = records if records is not None else [note_record(i) for i in range(n)]
    (root / "notes.jsonl").write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in lines), encoding="utf-8")
    if qrels is None:
        qrels = "query_id\tnote_id\tgrade\nn0\tn1\t3\nn0\tn2\t1\nn1\tn0\t2\n"
    (root / "qrels.tsv").write_text(qrels, encoding="utf-8")
    if pairs is None:
        pairs = [{"query_id": "n0", "positive_id": "n1", "negative_ids": ["n2", "n3"]}]
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    return root


FASHION_ROWS = [
    # articleType, baseColour, subCategory
    ("Shirts", "Blue", "Topwear"), ("Shirts", "Blue", "Topwear"), ("Shirts", "Red", "Topwear"),
    ("Tshirts", "Blue", "Topwear"), ("Tshirts", "Blue", "Topwear"), ("Jeans", "Blue", "Bottomwear"),
    ("Jeans", "Black", "Bottomwear"), ("Watches", None, "Watches"), ("Watches", None, "Watches"),
    ("Shoes", "White", "Shoes"), ("Belts", "Brown", "Belts"), ("Tshirts", "Red", "Topwear"),
]


def make_fashion_parquet(folder: Path, rows=FASHION_ROWS, bad_image_row: int | None = None) -> Path:
    """A folder with data/train-00000-of-00001.parquet in the Hub schema, one JPEG per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True, exist_ok=True)
    records = []
    for i, (article, colour, sub) in enumerate(rows):
        data = jpeg_bytes(i)
        if i == bad_image_row:
            data = data[: len(data) // 2]
        records.append({"id": 1000 + i, "gender": "Men", "masterCategory": "Apparel", "subCategory": sub,
                        "articleType": article, "baseColour": colour, "season": "Fall", "year": 2012.0,
                        "usage": "Casual", "productDisplayName": f"Brand Men {colour} {article}",
                        "image": {"bytes": data, "path": f"{1000 + i}.jpg"}})
    pq.write_table(pa.Table.from_pylist(records), folder / "data" / "train-00000-of-00001.parquet")
    return folder
