"""Qilin notes table: the ten-note toy table, hashtag extraction, image path parsing, image_root."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
from data_testkit import jpeg_bytes

from uninote.data import load_corpus
from uninote.data.problems import CorpusWarning
from uninote.data.qilin import extract_topics, parse_image_paths
from uninote.errors import CorpusError

SHARED = Path(os.environ.get("UNINOTE_SHARED_DATA", Path(__file__).resolve().parents[4] / "shared" / "data"))
TOY = SHARED / "qilin-toy" / "notes.csv"
needs_toy = pytest.mark.skipif(not TOY.is_file(), reason="shared qilin-toy table not present")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))


def test_extract_topics():
    body, tags = extract_topics("第一行\n好吃 #腊肠[话题]# #美食[话题]# #腊肠[话题]#\n")
    assert body == "第一行\n好吃" and tags == ["腊肠", "美食"]
    assert extract_topics("no tags # here [话题]") == ("no tags # here [话题]", [])


def test_parse_image_paths():
    printed = "['image/a/1.jpg' 'image/a/2.jpg'\n 'image/a/3.jpg']"
    assert parse_image_paths(printed) == ["image/a/1.jpg", "image/a/2.jpg", "image/a/3.jpg"]
    assert parse_image_paths('["x.jpg", "y.jpg"]') == ["x.jpg", "y.jpg"]
    assert parse_image_paths("['only.jpg']") == ["only.jpg"]
    assert parse_image_paths("[]") == [] and parse_image_paths(None) == [] and parse_image_paths(float("nan")) == []
    assert parse_image_paths(["p.jpg", "q.jpg"]) == ["p.jpg", "q.jpg"]


def _toy_rows():
    with open(TOY, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@needs_toy
def test_toy_table_loads_ten_text_only_notes_with_one_counting_warning():
    with pytest.warns(CorpusWarning) as record:
        corpus = load_corpus(TOY)
    messages = [str(w.message) for w in record if issubclass(w.category, CorpusWarning)]
    assert messages == [f"qilin: 10 of 10 notes have no image files under {TOY.parent}; loaded as text-only"]
    rows = _toy_rows()
    assert len(corpus) == 10 and [n.note_id for n in corpus] == [r["note_idx"] for r in rows]
    for note, row in zip(corpus, rows):
        assert note.images == [] and note.title == row["note_title"].strip()
        assert "[话题]#" not in note.body
        assert note.tags == list(dict.fromkeys(extract_topics(row["note_content"])[1]))
        assert note.meta["image_paths"] == parse_image_paths(row["image_path"])
        assert note.meta["taxonomy1_id"] == row["taxonomy1_id"] and "note_embedding" not in note.meta
    assert corpus.get("0").tags == ["腊肠"] and len(corpus.get("0").meta["image_paths"]) == 10
    assert sum(len(n.meta["image_paths"]) > 1 for n in corpus) >= 5
    assert isinstance(corpus.get("0").meta["like_num"], int)
    with pytest.warns(CorpusWarning, match="10 of 10"):  # the notice is repeated on cached loads
        load_corpus(TOY)


@needs_toy
def test_image_root_finds_photos(tmp_path):
    rows = _toy_rows()
    paths = parse_image_paths(rows[2]["image_path"])  # note 2 lists three photos
    root = tmp_path / "photos"
    for i, rel in enumerate(paths[:2]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg_bytes(i))
    with pytest.warns(CorpusWarning) as record:
        corpus = load_corpus(TOY, image_root=root)
    messages = sorted(str(w.message) for w in record if issubclass(w.category, CorpusWarning))
    assert messages == [f"qilin: 1 of 10 notes miss some of their image files under {root}",
                        f"qilin: 9 of 10 notes have no image files under {root}; loaded as text-only"]
    note = corpus.get("2")
    assert [corpus.image_path(note, i).read_bytes() for i in range(2)] == [jpeg_bytes(0), jpeg_bytes(1)]


def test_qilin_parquet_and_bad_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"note_idx": 7, "note_title": "t", "note_content": "b #x[话题]#", "image_path": "['a.jpg']"},
            {"note_idx": 7, "note_title": "dup", "note_content": "", "image_path": "[]"}]
    path = tmp_path / "notes.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(CorpusError, match=rf"{path}:3: duplicate note_idx 7 \(first on line 2\)"):
        load_corpus(path)
    with pytest.warns(CorpusWarning):
        corpus = load_corpus(path, on_error="skip")
    assert [(n.note_id, n.body, n.tags) for n in corpus] == [("7", "b", ["x"])]


@needs_toy
def test_csv_line_numbers_count_multiline_fields(tmp_path):
    table = tmp_path / "notes.csv"
    shutil.copy(TOY, table)
    rows = _toy_rows()
    with open(table, "a", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writerow({**rows[0], "note_idx": ""})
    n_lines = len(TOY.read_text(encoding="utf-8").splitlines())
    with pytest.raises(CorpusError, match=rf"notes\.csv:{n_lines + 1}: missing 'note_idx'"):
        load_corpus(table)
