"""A retriever over memory-mapped vectors: the in-RAM neighbours, no full copy, updates, RSS."""

import numpy as np
import pytest

from uninote.embedding_store import EmbeddingWriter
from uninote.embeddings import NoteEmbeddings, QueryEmbedding, l2_normalize
from uninote.index import IndexConfig, Retriever, vectors
from uninote.index.synthetic import synthetic_embeddings
from uninote.shards import ShardedArray

STRATEGIES = ("exact", "ann", "adaptive", "local", "global+local")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 70 rows and RAM tables only up to 16-d, so the test crosses block boundaries,
    a shard boundary and both kinds of lower-dim table (resident 16-d, mapped 48-d prefix)."""
    monkeypatch.setattr(vectors, "BLOCK_ROWS", 70)
    monkeypatch.setattr(Retriever, "RESIDENT_DIM", 16)


def in_ram(e: NoteEmbeddings) -> NoteEmbeddings:
    """The same values as ``e`` (float16 included) as plain float32 arrays."""
    a = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return NoteEmbeddings(list(e.note_ids), a(e.note), a(e.text), a(e.image), e.image_owner, a(e.region),
                          e.region_owner, e.region_image, e.model_version)


def same_hits(a: Retriever, b: Retriever, queries, atol: float = 1e-6, **kw) -> None:
    for q in queries:
        x, y = a.search(q, **kw), b.search(q, **kw)
        assert [h.note_id for h in x] == [h.note_id for h in y], (q, kw)
        np.testing.assert_allclose([h.score for h in x], [h.score for h in y], rtol=1e-5, atol=atol)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_mapped_version_gives_the_in_ram_neighbours(tmp_path, small_blocks, dtype):
    emb = synthetic_embeddings(300, dim=96, n_clusters=6, seed=3)
    emb.save(tmp_path / "e", dtypes=dtype, shard_notes=130)
    mapped = NoteEmbeddings.load(tmp_path / "e")
    assert isinstance(mapped.note, ShardedArray) and len(mapped.note.parts) == 3
    cfg = IndexConfig(kind="hnsw", ef_search=400)
    disk, ram = Retriever(mapped, cfg), Retriever(in_ram(mapped), cfg)
    assert disk.table("note", 96).is_mapped and disk.table("region", 96).is_mapped
    assert not disk.table("note", 16).is_mapped and disk.table("note", 48).is_mapped
    queries = mapped.note_ids[::37]
    for strategy in STRATEGIES:
        for g in ("note", "text", "image", "region"):
            for dim in (16, 48, 96):
                same_hits(disk, ram, queries, k=10, dim=dim, granularity=g, strategy=strategy)


def test_multi_vector_rows_not_sorted_by_owner_are_read_through_an_order(tmp_path, small_blocks):
    e = synthetic_embeddings(200, dim=32, n_clusters=4, seed=5)
    rng = np.random.default_rng(0)
    pi, pr = rng.permutation(len(e.image)), rng.permutation(len(e.region))
    shuffled = NoteEmbeddings(e.note_ids, e.note, e.text, e.image[pi], e.image_owner[pi], e.region[pr],
                              e.region_owner[pr], e.region_image[pr], e.model_version)
    writer = EmbeddingWriter(tmp_path / "e", "synthetic", "float32")  # one shard, owners kept as given
    writer.write(shuffled)
    writer.close()
    mapped = NoteEmbeddings.load(tmp_path / "e")
    assert isinstance(mapped.region, np.memmap) and np.any(np.diff(mapped.region_owner) < 0)
    disk, ram = Retriever(mapped), Retriever(shuffled)
    assert disk.table("region", 32).is_mapped
    for g in ("image", "region"):
        for strategy in ("local", "global+local", "exact"):
            same_hits(disk, ram, e.note_ids[::23], k=8, granularity=g, strategy=strategy)
    q = disk.query_embedding("n00007")
    np.testing.assert_allclose(q.regions, ram.query_embedding("n00007").regions, rtol=1e-6)


def test_add_remove_compact_save_load_on_a_mapped_version(tmp_path, small_blocks):
    emb = synthetic_embeddings(250, dim=64, n_clusters=5, seed=7)
    emb.save(tmp_path / "e", dtypes="float16", shard_notes=100)
    disk = Retriever(NoteEmbeddings.load(tmp_path / "e"))
    ram = Retriever(in_ram(NoteEmbeddings.load(tmp_path / "e")))
    like = "n00011"
    q, rng = ram.query_embedding(like), np.random.default_rng(1)
    jitter = lambda a: l2_normalize(a + 0.01 * rng.standard_normal(a.shape))  # noqa: E731
    fresh = QueryEmbedding(jitter(q.note), jitter(q.text), jitter(q.images), jitter(q.regions), q.region_image)
    for r in (disk, ram):
        r.table("note", 48)  # a mapped prefix made before the add gets the new row too
        r.add("fresh", fresh)
        r.remove("n00042")
    assert len(disk.table("note", 64)) == 251 and disk.table("note", 64).is_mapped
    for strategy in ("exact", "adaptive", "local", "global+local"):
        for dim in (16, 48, 64):
            hits = disk.search(like, k=10, dim=dim, strategy=strategy)
            assert hits[0].note_id == "fresh" and "n00042" not in {h.note_id for h in hits}
            same_hits(disk, ram, [like, "fresh", "n00200"], k=10, dim=dim, strategy=strategy)
    loaded = Retriever.load(disk.save(tmp_path / "index"), model_version="synthetic")
    assert loaded.table("note", 64).is_mapped and "n00042" not in loaded
    compact = disk.compact()
    for other, atol in ((loaded, 1e-3), (compact, 1e-6)):  # the added float32 note is stored float16
        for strategy in ("exact", "adaptive", "local"):
            same_hits(disk, other, [like, "fresh", "n00100"], atol, k=10, strategy=strategy)


def _anon_bytes() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssAnon:"))


def _write_corpus(folder, n: int, dim: int, shard: int = 100_000) -> None:
    rng = np.random.default_rng(0)
    writer = EmbeddingWriter(folder, "m", "float32", regions=False)
    empty, none = np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    for start in range(0, n, shard):
        block = l2_normalize(rng.standard_normal((shard, dim), dtype=np.float32))
        ids = [f"n{i}" for i in range(start, start + shard)]
        writer.write(NoteEmbeddings(ids, block, block, empty, none, empty, none, none, "m"))
    writer.close()


def _open_and_search(folder):
    r = Retriever(NoteEmbeddings.load(folder), shortlist_dim=8)
    for strategy in ("exact", "adaptive"):
        assert len(r.search("n12345", k=10, strategy=strategy)) == 10
    assert len(r.search("n54321", k=10, granularity="text")) == 10
    return r


def test_opening_and_searching_a_version_reads_no_full_copy(tmp_path):
    n, dim = 300_000, 192
    _write_corpus(tmp_path / "small", n, 16)  # same ids and 8-d shortlist table, almost no vectors
    _write_corpus(tmp_path / "big", n, dim)
    vector_bytes = 2 * n * dim * 4  # note + text
    before = _anon_bytes()
    small = _open_and_search(tmp_path / "small")
    ids_cost = _anon_bytes() - before
    before = _anon_bytes()
    big = _open_and_search(tmp_path / "big")
    # a copy of the vectors would add vector_bytes; the allocator varies by a few MB per load
    assert _anon_bytes() - before - ids_cost < 0.1 * vector_bytes, (_anon_bytes() - before, ids_cost)
    saved = big.save(tmp_path / "index")  # streamed: no full copy either
    assert _anon_bytes() - before - ids_cost < 0.15 * vector_bytes
    del big
    before = _anon_bytes()
    loaded = Retriever.load(saved)
    assert loaded.table("note", dim).is_mapped and len(loaded.search("n777", k=5, strategy="adaptive")) == 5
    assert _anon_bytes() - before - ids_cost < 0.1 * vector_bytes
    assert len(small) == len(loaded) == n
