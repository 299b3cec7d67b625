"""Map vectors: one per note, from only the sampled notes' rows; big versions are sampled."""

import numpy as np

from uninote.embeddings import NoteEmbeddings, l2_normalize
from uninote.index.synthetic import synthetic_embeddings
from uninote.service.maps import map_rows, per_note_vectors


def _brute(emb, granularity):
    """Every note at once: the mean of its vectors (its fused vector when it has none)."""
    vectors, owner = emb.vectors(granularity)
    if owner is None:
        return np.asarray(vectors, np.float32)
    out = np.stack([vectors[owner == i].sum(axis=0) if np.any(owner == i) else emb.note[i] for i in range(len(emb))])
    return l2_normalize(out)


def test_sampled_rows_get_the_vectors_of_the_whole_computation(tmp_path):
    emb = synthetic_embeddings(120, dim=48, seed=4)
    emb.save(tmp_path / "e", shard_notes=50, dtypes="float32")
    mapped = NoteEmbeddings.load(tmp_path / "e")  # three shards, memory-mapped
    rows = np.array([0, 3, 17, 51, 99, 119])
    for g in ("note", "image", "region"):
        for dim in (16, 48):
            small = emb.truncate(dim)
            np.testing.assert_allclose(per_note_vectors(mapped, g, dim, rows), _brute(small, g)[rows], atol=1e-5)
    np.testing.assert_allclose(per_note_vectors(emb, "image"), _brute(emb, "image"), atol=1e-5)


def test_map_samples_big_versions_only():
    np.testing.assert_array_equal(map_rows(50, max_notes=100), np.arange(50))
    rows = map_rows(1_000_000, max_notes=1000)
    assert len(rows) == len(set(rows)) == 1000 and np.all(np.diff(rows) > 0) and rows[-1] < 1_000_000
    np.testing.assert_array_equal(rows, map_rows(1_000_000, max_notes=1000))  # seeded: same map every time
