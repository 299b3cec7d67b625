"""Embeddings on disk: shards, memory-mapped loading, streaming + resumed writes, old folders."""

import json

import numpy as np
import pytest

from uninote.embedding_store import EmbeddingWriter, costs, embed_to_disk
from uninote.embeddings import NoteEmbeddings
from uninote.index.synthetic import synthetic_embeddings
from uninote.shards import CorruptShardError, ShardedArray, open_shards

FIELDS = ("note", "text", "image", "image_owner", "region", "region_owner", "region_image")


def _same(a: NoteEmbeddings, b: NoteEmbeddings, atol: float = 0.0) -> None:
    assert a.note_ids == b.note_ids and a.model_version == b.model_version
    for k in FIELDS:
        np.testing.assert_allclose(np.asarray(getattr(a, k), np.float64), np.asarray(getattr(b, k), np.float64),
                                   atol=atol, err_msg=k)


def _anon_bytes() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssAnon:"))


def test_sharded_round_trip_maps_every_matrix(tmp_path):
    emb = synthetic_embeddings(250, dim=32, seed=1)
    emb.save(tmp_path / "e", shard_notes=100, dtypes="float32")
    back = NoteEmbeddings.load(tmp_path / "e", verify=True)
    _same(emb, back)
    for g in ("note", "text", "image", "region"):
        a = getattr(back, g)
        assert isinstance(a, ShardedArray) and len(a.parts) == 3
        assert all(isinstance(p, np.memmap) for p in a.parts)
    i = int(emb.region_owner[-1])
    np.testing.assert_array_equal(back.query(i).regions, emb.query(i).regions)
    assert len(open_shards(tmp_path / "e").manifest["shards"]) == 3


def test_float16_storage_halves_bytes_and_stays_close(tmp_path):
    emb = synthetic_embeddings(120, dim=64, seed=2)
    emb.save(tmp_path / "f32", dtypes="float32")
    emb.save(tmp_path / "f16")  # the default
    back = NoteEmbeddings.load(tmp_path / "f16")
    assert isinstance(back.note, np.memmap) and back.note.dtype == np.float16
    assert set(open_shards(tmp_path / "f16").manifest["arrays"][g] for g in ("note", "text", "image", "region")) \
        == {"float16"}
    _same(emb, back, atol=1e-3)
    old = NoteEmbeddings.load(tmp_path / "f32")  # float32 folders keep loading, exactly
    assert old.note.dtype == np.float32
    _same(emb, old)
    c32, c16 = costs(tmp_path / "f32"), costs(tmp_path / "f16")
    assert c16["region"]["disk_bytes"] < 0.6 * c32["region"]["disk_bytes"]
    assert c32["region"]["vectors_per_note"] == len(emb.region) / len(emb)


def test_without_regions_stores_none(tmp_path):
    emb = synthetic_embeddings(40, dim=16, seed=3)
    emb.save(tmp_path / "e", regions=False, dtypes="float32")
    back = NoteEmbeddings.load(tmp_path / "e")
    assert back.region.shape == (0, 16) and len(back.region_owner) == 0
    cost = costs(tmp_path / "e")["region"]
    assert cost["rows"] == 0 and cost["disk_bytes"] <= 3 * 128  # three empty .npy headers
    np.testing.assert_array_equal(np.asarray(back.image), emb.image)


def _write_big(folder, n: int, dim: int, shard: int = 50_000) -> None:
    writer = EmbeddingWriter(folder, "m", "float32", regions=False)
    empty, none = np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    for start in range(0, n, shard):
        block = np.full((shard, dim), start, np.float32)
        ids = [f"n{i}" for i in range(start, start + shard)]
        writer.write(NoteEmbeddings(ids, block, block, empty, none, empty, none, none, "m"))
    writer.close()


def test_opening_reads_no_vectors(tmp_path):
    n, dim = 300_000, 96
    _write_big(tmp_path / "small", n, 2)  # same ids, almost no vector bytes: what opening must cost
    _write_big(tmp_path / "big", n, dim)
    vector_bytes = 2 * n * dim * 4
    before = _anon_bytes()
    small = NoteEmbeddings.load(tmp_path / "small")
    ids_cost = _anon_bytes() - before
    before = _anon_bytes()
    emb = NoteEmbeddings.load(tmp_path / "big")
    grown = _anon_bytes() - before
    assert isinstance(emb.note, ShardedArray) and all(isinstance(p, np.memmap) for p in emb.note.parts)
    # reading the vectors would grow by vector_bytes (230 MB); the ids cost about 45 MB, measured
    # on the small copy, but the allocator can hand memory back during that load (a negative
    # cost), so the cost is taken as at least 0 and the margin is half the vectors
    ids_cost = max(ids_cost, 0)
    assert grown - ids_cost < 0.5 * vector_bytes, (grown, ids_cost, vector_bytes)
    rows = np.array([3, 123_456, 299_999])
    np.testing.assert_array_equal(emb.note[rows][:, 0], [0, 100_000, 250_000])
    assert _anon_bytes() - before - ids_cost < 0.5 * vector_bytes
    assert len(small) == len(emb) == n


def test_corrupt_or_truncated_shard_is_named(tmp_path):
    synthetic_embeddings(90, dim=16, seed=4).save(tmp_path / "e", shard_notes=30)
    path = tmp_path / "e" / "shard-00001" / "text.npy"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    NoteEmbeddings.load(tmp_path / "e")  # sizes are fine: opening does not read the vectors
    with pytest.raises(CorruptShardError, match=r"shard-00001: text.npy fails its checksum"):
        NoteEmbeddings.load(tmp_path / "e", verify=True)
    path.write_bytes(bytes(data[:-40]))
    with pytest.raises(CorruptShardError, match=r"shard-00001: text.npy has \d+ bytes"):
        NoteEmbeddings.load(tmp_path / "e")


def test_old_single_file_folders_still_load(tmp_path):
    from safetensors.numpy import save_file

    emb = synthetic_embeddings(30, dim=16, seed=5)
    d = tmp_path / "old"
    d.mkdir()
    save_file({k: np.ascontiguousarray(getattr(emb, k)) for k in FIELDS}, str(d / "embeddings.safetensors"))
    (d / "embeddings.json").write_text(json.dumps({"note_ids": emb.note_ids, "model_version": emb.model_version,
                                                   "dim": emb.dim, "checksum": emb.checksum(), "meta": {}}))
    _same(emb, NoteEmbeddings.load(d))
    from uninote.cli.main import main

    assert main(["embed", "--migrate", str(d), "--dtype", "float32"]) == 0
    assert (d / "manifest.json").is_file() and not (d / "embeddings.safetensors").exists()
    _same(emb, NoteEmbeddings.load(d))


class _Interrupting:
    """A model whose ``embed_corpus`` fails on its ``fail_at``-th call (a killed embed run)."""

    def __init__(self, model, fail_at: int | None):
        self.model, self.fail_at, self.calls, self.version = model, fail_at, 0, model.version

    def embed_corpus(self, corpus, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.model.embed_corpus(corpus, **kwargs)


def test_resumed_embed_writes_the_same_shards(tmp_path):
    from uninote.data import load_corpus
    from uninote.model.testing import make_synthetic_corpus, tiny_config
    from uninote.model.uninote import UniNoteModel

    corpus = load_corpus(make_synthetic_corpus(tmp_path / "corpus", n_notes=30))
    model = UniNoteModel(tiny_config()).eval()
    embed_to_disk(model, corpus, tmp_path / "whole", shard_notes=8, progress=False, dtypes="float32")
    flaky = _Interrupting(model, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        embed_to_disk(flaky, corpus, tmp_path / "resumed", shard_notes=8, progress=False, dtypes="float32")
    assert len(open_shards(tmp_path / "resumed", allow_incomplete=True).manifest["shards"]) == 2
    with pytest.raises(CorruptShardError, match="interrupted after 2 shards"):
        NoteEmbeddings.load(tmp_path / "resumed")
    again = _Interrupting(model, fail_at=None)
    embed_to_disk(again, corpus, tmp_path / "resumed", shard_notes=8, progress=False, dtypes="float32")
    assert again.calls == 2  # shards 2 and 3 only
    def checksums(folder):
        return [{f: e["sha256"] for f, e in s["files"].items()} for s in open_shards(folder).manifest["shards"]]

    assert len(checksums(tmp_path / "whole")) == 4
    assert checksums(tmp_path / "whole") == checksums(tmp_path / "resumed")
    _same(NoteEmbeddings.load(tmp_path / "whole"), model.embed_corpus(corpus, progress=False), atol=1e-6)


def test_index_info_prints_cost_per_note(tmp_path, capsys):
    from uninote.cli.main import main

    emb = synthetic_embeddings(50, dim=32, regions_per_image=9, seed=6)
    emb.save(tmp_path / "e", dtypes={"note": "float32", "text": "float32", "image": "float32", "region": "float16"})
    assert main(["index", "info", "--embeddings", str(tmp_path / "e")]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    per_note = len(emb.region) / len(emb)
    assert lines["region"][1] == f"{per_note:.2f}" and lines["region"][2] == "float16"
    assert float(lines["region"][-1].replace(",", "")) > 1.5 * float(lines["region"][3].replace(",", ""))
    assert lines["note"][2] == "float32" and lines["note"][4] == "0"


def test_saving_over_an_index_folder_is_refused(tmp_path):
    from uninote.index import Retriever

    emb = synthetic_embeddings(20, dim=16, seed=7)
    Retriever(emb).save(tmp_path / "index")
    with pytest.raises(CorruptShardError, match="format"):
        emb.save(tmp_path / "index")
    assert Retriever.load(tmp_path / "index") is not None
