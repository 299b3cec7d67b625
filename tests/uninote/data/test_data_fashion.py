"""Fashion catalogue adapter: grading rule, derived qrels/pairs, cache, Hub path, real slice."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from data_testkit import FASHION_ROWS, jpeg_bytes, make_fashion_parquet

import uninote.data.fashion as fashion
from uninote.data import Note, fashion_grade, load_corpus, split_corpus
from uninote.data.problems import CorpusWarning
from uninote.errors import CorpusError

SHARED = Path(os.environ.get("UNINOTE_SHARED_DATA", Path(__file__).resolve().parents[4] / "shared" / "data"))
REAL = SHARED / "fashion-product-images-small"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))


def test_fashion_grade_rule():
    a = {"articleType": "Shirts", "baseColour": "Blue", "subCategory": "Topwear"}
    assert fashion_grade(a, dict(a)) == 3
    assert fashion_grade(a, {**a, "baseColour": "Red"}) == 2
    assert fashion_grade(a, {**a, "articleType": "Tshirts"}) == 1
    assert fashion_grade(a, {"articleType": "Jeans", "baseColour": "Blue", "subCategory": "Bottomwear"}) == 0
    # a missing attribute matches nothing
    assert fashion_grade({**a, "baseColour": None}, {**a, "baseColour": None}) == 2
    assert fashion_grade({"subCategory": None}, {"subCategory": None}) == 0


def _check_relevance_against_brute_force(notes, qrels, pairs):
    by_id = {n.note_id: n for n in notes}
    for q, row in qrels.items():
        expected = {n.note_id: fashion_grade(by_id[q].meta, n.meta) for n in notes if n.note_id != q}
        assert row == {k: g for k, g in expected.items() if g >= 1}
    for p in pairs:
        grades = {n.note_id: fashion_grade(by_id[p.query_id].meta, n.meta) for n in notes if n.note_id != p.query_id}
        best = max(grades.values())
        assert grades[p.positive_id] == best >= 2, "positive comes from the best available grade"
        assert len(set(p.negative_ids)) == len(p.negative_ids) <= fashion.N_NEGATIVES
        assert p.query_id not in p.negative_ids
        assert all(grades[n] < grades[p.positive_id] for n in p.negative_ids)
        # hard negatives are preferred: a random (grade 0) one appears only when harder ones ran out
        hard = [n for n, g in grades.items() if 1 <= g < best]
        n_hard = sum(grades[n] >= 1 for n in p.negative_ids)
        assert n_hard == min(len(hard), fashion.N_NEGATIVES)
    with_pair = {p.query_id for p in pairs}
    for n in notes:  # every note with a grade >= 2 partner gets exactly one pair
        has_partner = any(fashion_grade(n.meta, m.meta) >= 2 for m in notes if m is not n)
        assert (n.note_id in with_pair) == has_partner


def _random_notes(n, seed):
    rng = np.random.default_rng(seed)
    notes = []
    for i in range(n):
        sub = rng.integers(0, 3)
        meta = {"subCategory": f"s{sub}", "articleType": f"a{sub}{rng.integers(0, 3)}",
                "baseColour": None if rng.random() < 0.1 else f"c{rng.integers(0, 3)}", "source": "fashion"}
        notes.append(Note(f"p{i}", meta=meta))
    return notes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_derive_relevance_matches_brute_force(seed):
    notes = _random_notes(60, seed)
    qrels, pairs = fashion.derive_relevance(notes, max_queries=20, seed=seed)
    assert len(qrels) == 20 and all(qrels.values())
    _check_relevance_against_brute_force(notes, qrels, pairs)
    assert fashion.derive_relevance(notes, max_queries=20, seed=seed) == (qrels, pairs)  # deterministic


def test_adapter_on_synthetic_parquet(tmp_path):
    source = make_fashion_parquet(tmp_path / "fashion")
    corpus = load_corpus(source)
    assert [n.note_id for n in corpus] == [str(1000 + i) for i in range(len(FASHION_ROWS))]
    for i, (note, (article, colour, sub)) in enumerate(zip(corpus, FASHION_ROWS)):
        assert note.title == f"Brand Men {colour} {article}" and note.body == "" and note.tags == []
        assert note.images == [f"images/{note.note_id}.jpg"]
        assert corpus.image_path(note).read_bytes() == jpeg_bytes(i)
        assert (note.meta["articleType"], note.meta["baseColour"], note.meta["subCategory"]) == (article, colour, sub)
        assert note.meta["year"] == 2012 and isinstance(note.meta["year"], int)
    # Belts and Shoes have no same-sub-category partner, so they can never be queries
    assert "1009" not in corpus.qrels and "1010" not in corpus.qrels
    assert len(corpus.qrels) == 10
    _check_relevance_against_brute_force(corpus.notes, corpus.qrels, corpus.pairs)


def test_detects_single_parquet_file_and_format_override(tmp_path):
    source = make_fashion_parquet(tmp_path / "fashion")
    file = source / "data" / "train-00000-of-00001.parquet"
    assert len(load_corpus(file)) == len(FASHION_ROWS)
    assert len(load_corpus(file, format="fashion", limit=3)) == 3


def test_materialised_once_then_cached(tmp_path, monkeypatch):
    source = make_fashion_parquet(tmp_path / "fashion")
    first = load_corpus(source)
    monkeypatch.setattr(fashion, "read_catalogue", lambda *a, **k: pytest.fail("re-materialised"))
    again = load_corpus(source)
    assert again.root == first.root and again.notes == first.notes and again.qrels == first.qrels
    assert first.root.parent == tmp_path / "cache" / "corpora"
    monkeypatch.undo()
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    other = load_corpus(source, max_queries=3)  # other options -> another cache entry
    assert other.root != first.root and len(other.qrels) == 3


def test_bad_image_row_fails_or_is_skipped(tmp_path):
    source = make_fashion_parquet(tmp_path / "fashion", bad_image_row=4)
    parquet = source / "data" / "train-00000-of-00001.parquet"
    with pytest.raises(CorpusError, match=rf"{parquet}:5: row 5 \(id 1004\): truncated JPEG"):
        load_corpus(source)
    with pytest.warns(CorpusWarning, match="skipped 1 problem"):
        corpus = load_corpus(source, on_error="skip")
    assert "1004" not in corpus and len(corpus) == len(FASHION_ROWS) - 1
    with pytest.warns(CorpusWarning, match="skipped 1 problem"):  # the notice survives the cache
        load_corpus(source, on_error="skip")


def test_hub_repo_id_goes_through_snapshot_download(tmp_path, monkeypatch):
    local = make_fashion_parquet(tmp_path / "hub-snapshot")
    calls = []

    def fake_snapshot_download(repo_id, repo_type=None, **kwargs):
        calls.append((repo_id, repo_type))
        return str(local)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    corpus = load_corpus("ashraq/fashion-product-images-small", limit=8)
    assert calls == [("ashraq/fashion-product-images-small", "dataset")]
    assert len(corpus) == 8 and corpus.name == "fashion-product-images-small"
    assert corpus.notes == load_corpus(local, limit=8).notes


def test_split_rederives_labels_within_each_side():
    notes = _random_notes(80, 5)
    from uninote.data import Corpus

    qrels, pairs = fashion.derive_relevance(notes, max_queries=30, seed=0)
    corpus = Corpus(Path("/nonexistent"), notes, qrels, pairs, "synthetic")
    train, test = split_corpus(corpus, test_fraction=0.3, seed=0, max_queries=10)
    for side in (train, test):
        ids = {n.note_id for n in side}
        assert len(side.qrels) == 10
        assert all(q in ids and set(row) <= ids for q, row in side.qrels.items())
        _check_relevance_against_brute_force(side.notes, side.qrels, side.pairs)


@pytest.mark.integration
@pytest.mark.skipif(not REAL.is_dir(), reason="shared fashion data not present")
def test_real_catalogue_slice():
    import pyarrow.parquet as pq

    corpus = load_corpus(REAL, limit=300, max_queries=50)
    table = pq.read_table(next((REAL / "data").glob("*.parquet")),
                          columns=["id", "productDisplayName", "articleType", "baseColour", "subCategory"])
    rows = table.slice(0, 300).to_pylist()
    assert len(corpus) == 300 and len(corpus.qrels) == 50
    for note, row in zip(corpus, rows):
        assert note.note_id == str(row["id"])
        assert note.title == row["productDisplayName"] and note.body == "" and note.tags == []
        assert note.text() == row["productDisplayName"]  # no attribute words beyond the product name
        assert {k: note.meta[k] for k in ("articleType", "baseColour", "subCategory")} == \
               {k: row[k] for k in ("articleType", "baseColour", "subCategory")}
        assert corpus.image_path(note).is_file()
    _check_relevance_against_brute_force(corpus.notes, corpus.qrels, corpus.pairs)
    n_pairs = sum(any(fashion_grade(a.meta, b.meta) >= 2 for b in corpus if b is not a) for a in corpus)
    assert len(corpus.pairs) == n_pairs > 100
    assert all(len(p.negative_ids) == fashion.N_NEGATIVES for p in corpus.pairs)
    grades = [g for row in corpus.qrels.values() for g in row.values()]
    assert set(grades) == {1, 2, 3}
