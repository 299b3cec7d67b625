"""The all-notes I2I table on one machine: equal to Retriever.search, resumable, idempotent parts."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import with_duplicate

from uninote.embeddings import NoteEmbeddings, truncate
from uninote.errors import ConfigError
from uninote.index.i2i import I2ISettings, top_per_row
from uninote.index.i2i_table import MANIFEST, IncompleteI2IError, i2i_local, read_i2i
from uninote.index.retriever import Retriever


@pytest.fixture(scope="module")
def sharded(emb, tmp_path_factory):
    """The 400 notes with two exact duplicate groups, written as 3 shards (index parts)."""
    e = with_duplicate(with_duplicate(emb, 3, 250), 3, 397)
    e = with_duplicate(e, 10, 11)
    folder = tmp_path_factory.mktemp("i2i") / "emb"
    e.save(folder, shard_notes=150)
    return folder


def _lists_equal(df: pd.DataFrame, retriever: Retriever, strategy: str, k: int, dim: int) -> None:
    """Every list equals ``Retriever.search``'s: scores within float tolerance, ids equal except
    where exact duplicates tie (then the other copy, whose true cosine is the same, is listed)."""
    assert df.note_id.tolist() == retriever.note_ids and df.note_id.is_unique
    full = retriever.table("note", retriever.full_dim)
    table = truncate(full.read(slice(0, len(full))), dim)
    for note_id, ids, scores in zip(df.note_id, df.neighbour_ids, df.scores):
        hits = retriever.search(note_id, k=k, dim=dim, strategy=strategy)
        np.testing.assert_allclose(scores, [h.score for h in hits], atol=1e-5, err_msg=note_id)
        assert len(set(ids)) == len(ids) == k, note_id
        query = table[retriever.slot(note_id)]
        for got, hit in zip(ids, hits):
            if got != hit.note_id:
                assert abs(float(table[retriever.slot(got)] @ query) - hit.score) < 1e-5, (note_id, got)


@pytest.mark.parametrize("strategy,dim", [("exact", 32), ("exact", 96), ("adaptive", 64), ("ann", 32)])
def test_equals_retriever_search(sharded, tmp_path, strategy, dim):
    settings = I2ISettings(k=12, dim=dim, strategy=strategy, shortlist=30, shortlist_dim=16, query_block=64)
    ran = i2i_local(sharded, tmp_path / "out", settings, progress=False)
    assert ran["blocks"] == 7 and ran["notes"] == 400
    r = Retriever(NoteEmbeddings.load(sharded))
    r.shortlist, r.shortlist_dim = 30, 16
    df = read_i2i(tmp_path / "out")
    _lists_equal(df, r, strategy, 12, dim)
    assert all(len(ids) == 12 for ids in df.neighbour_ids)


def test_self_and_exact_duplicates_never_listed(sharded, tmp_path):
    i2i_local(sharded, tmp_path / "out", I2ISettings(k=20, dim=32, query_block=100), progress=False)
    df = read_i2i(tmp_path / "out").set_index("note_id")
    ids = NoteEmbeddings.load(sharded).note_ids
    for a, b in ((3, 250), (3, 397), (250, 397), (10, 11)):
        assert ids[b] not in df.loc[ids[a], "neighbour_ids"] and ids[a] not in df.loc[ids[b], "neighbour_ids"]
    assert not any(note in list(row) for note, row in df.neighbour_ids.items())


def test_metadata_and_parquet_dataset(sharded, tmp_path):
    import pyarrow.parquet as pq

    i2i_local(sharded, tmp_path / "out", I2ISettings(k=5, dim=16, query_block=128), progress=False)
    parts = sorted((tmp_path / "out").glob("part-*.parquet"))
    assert len(parts) == 4
    info = json.loads(pq.read_schema(parts[0]).metadata[b"uninote.i2i"])
    assert info["settings"]["k"] == 5 and info["settings"]["dim"] == 16
    assert info["model_version"] == "synthetic" and info["notes"] == 400
    whole = pd.read_parquet(tmp_path / "out")  # the folder reads as one Parquet dataset
    assert len(whole) == 400 and list(whole.columns) == ["note_id", "neighbour_ids", "scores"]


def test_resume_computes_only_missing_blocks(sharded, tmp_path):
    out = tmp_path / "out"
    settings = I2ISettings(k=8, dim=32, query_block=50)
    i2i_local(sharded, out, settings, progress=False)
    before = read_i2i(out)
    for block in (2, 5):
        (out / f"part-{block:06d}.parquet").unlink()
    manifest = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps(dict(manifest, complete=False)))  # as a killed job leaves it
    (out / ".tmp-part-000002.parquet-dead").write_bytes(b"half a file")
    with pytest.raises(IncompleteI2IError, match="has not finished"):
        read_i2i(out)
    assert i2i_local(sharded, out, settings, progress=False)["blocks"] == 2
    pd.testing.assert_frame_equal(read_i2i(out), before)
    assert not list(out.glob(".tmp-*"))


def test_other_settings_refused_on_the_same_folder(sharded, tmp_path):
    i2i_local(sharded, tmp_path / "out", I2ISettings(k=8, dim=32), progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        i2i_local(sharded, tmp_path / "out", I2ISettings(k=9, dim=32), progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an I2I folder"):
        i2i_local(sharded, tmp_path / "other", I2ISettings(), progress=False)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_bad_settings_fail_before_writing(sharded, tmp_path):
    with pytest.raises(ConfigError, match="exceeds the embeddings' full dim 96"):
        i2i_local(sharded, tmp_path / "out", I2ISettings(dim=128), progress=False)
    with pytest.raises(ConfigError, match="strategy 'local' unknown"):
        I2ISettings(strategy="local").validate()
    assert not (tmp_path / "out").exists()


def test_top_per_row_matches_a_full_sort_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((7, 5000)).astype(np.float32)
    scores[:, 100:110] = scores[:, [0]]  # ties
    scores[3, :] = 0.5  # all tied
    for want in (1, 10, 60, 5000, 6000):
        cols, vals = top_per_row(scores, want)
        for i in range(len(scores)):
            order = np.lexsort((np.arange(scores.shape[1]), -scores[i]))[:want]
            np.testing.assert_array_equal(cols[i], order)
            np.testing.assert_array_equal(vals[i], scores[i, order])
