"""Index builds streamed over memory-mapped shards equal the in-memory builds."""

import numpy as np

from uninote.embeddings import truncate
from uninote.index.ann import IndexConfig, build_ann, build_ann_streaming
from uninote.index.synthetic import SyntheticSpec, synthetic_vectors
from uninote.shards import ShardedArray, ShardWriter, open_shards


def _sharded(tmp_path, x: np.ndarray, rows: int) -> ShardedArray:
    writer = ShardWriter(tmp_path / "s", {"x": "float32"})
    for start in range(0, len(x), rows):
        writer.write({"x": x[start:start + rows]})
    writer.close()
    return open_shards(tmp_path / "s").array("x")


def _search(index, q, k=10):
    return index.search(np.ascontiguousarray(q), k)[1]


def test_streamed_ivfpq_is_the_in_memory_index(tmp_path):
    spec = SyntheticSpec(3000, full_dim=64, seed=1)
    x, q = synthetic_vectors(spec, 64), synthetic_vectors(spec, 64, "query", 50)
    shards = _sharded(tmp_path, x, rows=700)
    assert len(shards.parts) == 5
    cfg = IndexConfig(kind="ivfpq", ivf_nprobe=8)
    streamed = build_ann_streaming(shards, "ivfpq", cfg, block_rows=500)
    np.testing.assert_array_equal(_search(streamed, q), _search(build_ann(x, "ivfpq", cfg), q))
    prefix = build_ann_streaming(shards, "ivfpq", cfg, dim=16, block_rows=500)
    np.testing.assert_array_equal(_search(prefix, truncate(q, 16)),
                                  _search(build_ann(truncate(x, 16), "ivfpq", cfg), truncate(q, 16)))


def test_streamed_hnsw_finds_the_in_memory_neighbours(tmp_path):
    spec = SyntheticSpec(2000, full_dim=32, seed=2)
    x, q = synthetic_vectors(spec, 32), synthetic_vectors(spec, 32, "query", 50)
    cfg = IndexConfig(kind="hnsw", ef_search=256)
    streamed = build_ann_streaming(_sharded(tmp_path, x, rows=600), "hnsw", cfg, block_rows=300)
    memory = build_ann(x, "hnsw", cfg)
    for index in (streamed, memory):
        index.hnsw.efSearch = 256
    a, b = _search(streamed, q), _search(memory, q)
    overlap = np.mean([len(set(r) & set(s)) / 10 for r, s in zip(a, b)])
    assert overlap >= 0.99, overlap
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert np.mean([len(set(r) & set(s)) / 10 for r, s in zip(a, exact)]) >= 0.99
