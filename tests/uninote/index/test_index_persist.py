"""Save/load round trip, model-version mismatch, corrupted and truncated files."""

import json

import numpy as np
import pytest

from uninote.errors import ModelMismatchError
from uninote.index import CorruptIndexError, IndexConfig, Retriever


@pytest.fixture
def saved(emb, tmp_path):
    r = Retriever(emb, IndexConfig(kind="hnsw"))
    r.build(dims=[32, 96], granularities=["note", "region"])
    out = r.save(tmp_path / "index")
    return r, out


def test_round_trip_same_results(saved):
    r, out = saved
    loaded = Retriever.load(out, model_version="synthetic")
    for strategy in ("exact", "ann", "adaptive", "local", "global+local"):
        for dim in (32, 96):
            a = r.search("n00042", k=10, dim=dim, strategy=strategy)
            b = loaded.search("n00042", k=10, dim=dim, strategy=strategy)
            assert [h.note_id for h in a] == [h.note_id for h in b]
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-6)


def test_manifest_describes_every_index(saved):
    _, out = saved
    m = json.loads((out / "manifest.json").read_text())
    assert m["model_version"] == "synthetic" and m["full_dim"] == 96
    kinds = {(e["granularity"], e["dim"]): e["kind"] for e in m["indexes"]}
    assert kinds[("note", 32)] == "hnsw" and kinds[("region", 96)] == "hnsw"
    for e in m["indexes"]:
        assert {"count", "vectors_checksum"} <= set(e) and e["count"] > 0


def test_model_mismatch_is_refused(saved):
    _, out = saved
    with pytest.raises(ModelMismatchError, match="built with model version 'synthetic'.*'other'"):
        Retriever.load(out, model_version="other")


@pytest.mark.parametrize("target", ["note-d32-hnsw.faiss", "vectors.safetensors", "ids.json"])
def test_truncated_file_fails_cleanly(saved, target):
    _, out = saved
    data = (out / target).read_bytes()
    (out / target).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptIndexError, match="truncated"):
        Retriever.load(out)


@pytest.mark.parametrize("target", ["region-d96-hnsw.faiss", "vectors.safetensors"])
def test_corrupted_file_fails_cleanly(saved, target):
    _, out = saved
    data = bytearray((out / target).read_bytes())
    for i in range(0, len(data), 97):  # flip bytes, same size
        data[i] ^= 0xFF
    (out / target).write_bytes(bytes(data))
    with pytest.raises(CorruptIndexError, match="checksum mismatch"):
        Retriever.load(out)


def test_missing_or_garbage_manifest(saved, tmp_path):
    _, out = saved
    (out / "note-d32-hnsw.faiss").unlink()
    with pytest.raises(CorruptIndexError, match="missing"):
        Retriever.load(out)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptIndexError, match="not valid JSON"):
        Retriever.load(out)
    with pytest.raises(CorruptIndexError, match="no index manifest"):
        Retriever.load(tmp_path / "nowhere")


def test_manifest_with_unknown_config_key_is_refused(saved):
    _, out = saved
    m = json.loads((out / "manifest.json").read_text())
    m["config"]["bogus"] = 1
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CorruptIndexError, match="inconsistent index files"):
        Retriever.load(out)
