"""Every strategy against the brute-force reference (uninote.index.scoring) on seeded data."""

import numpy as np
import pytest

from uninote.embeddings import truncate
from uninote.index import IndexConfig, Retriever
from uninote.index.scoring import maxsim_scores, top_k


def reference(e, note_id, granularity, dim, k, modality="note"):
    """Brute-force (ids, scores): max-sim over the truncated table, query note excluded."""
    et = e.truncate(dim)
    vecs, owner = et.vectors(granularity)
    q = e.query(note_id).vectors(modality, granularity)
    scores = maxsim_scores(truncate(q, dim), vecs, owner, len(e))
    rows = top_k(scores, k, exclude=[e.row(note_id)])
    return [e.note_ids[i] for i in rows], scores[rows]


def recall(hits, ids):
    return len({h.note_id for h in hits} & set(ids)) / len(ids)


@pytest.mark.parametrize("granularity", ["note", "text", "image", "region"])
@pytest.mark.parametrize("dim", [32, 96])
def test_exact_matches_brute_force(emb, granularity, dim):
    r = Retriever(emb)
    for nid in ("n00003", "n00100", "n00399"):
        if emb.query(nid).vectors("note", granularity) is None:
            continue
        ids, scores = reference(emb, nid, granularity, dim, 10)
        hits = r.search(nid, k=10, dim=dim, granularity=granularity, strategy="exact")
        assert [h.note_id for h in hits] == ids
        np.testing.assert_allclose([h.score for h in hits], scores, rtol=1e-5, atol=1e-6)
        assert [h.rank for h in hits] == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("modality,granularity", [("image", "image"), ("image", "region"), ("text", "note"),
                                                  ("text", "text")])
def test_exact_query_modalities(emb, modality, granularity):
    r = Retriever(emb)
    nid = next(n for n in emb.note_ids if emb.query(n).images is not None)
    ids, scores = reference(emb, nid, granularity, 96, 10, modality=modality)
    hits = r.search(nid, k=10, granularity=granularity, modality=modality)
    assert [h.note_id for h in hits] == ids


def test_local_is_maxsim_over_regions(emb):
    r = Retriever(emb)
    nid = next(n for n in emb.note_ids if emb.query(n).regions is not None)
    ids, scores = reference(emb, nid, "region", 64, 10)
    hits = r.search(nid, k=10, dim=64, granularity="note", strategy="local")  # note -> local_granularity
    assert [h.note_id for h in hits] == ids
    np.testing.assert_allclose([h.score for h in hits], scores, rtol=1e-5)


def test_ann_hnsw_and_ivfpq_recall(emb):
    for kind in ("hnsw", "ivfpq"):
        r = Retriever(emb, IndexConfig(kind=kind, ivf_nprobe=8))
        rec = []
        for nid in emb.note_ids[:60]:
            ids, _ = reference(emb, nid, "note", 96, 10)
            rec.append(recall(r.search(nid, k=10, strategy="ann"), ids))
        assert np.mean(rec) >= 0.9, (kind, np.mean(rec))


def test_ann_multi_vector_recall(emb):
    r = Retriever(emb, IndexConfig(kind="hnsw"))
    rec = []
    for nid in [n for n in emb.note_ids if emb.query(n).regions is not None][:40]:
        ids, scores = reference(emb, nid, "region", 96, 10)
        hits = r.search(nid, k=10, granularity="region", strategy="ann")
        rec.append(recall(hits, ids))
        common = {h.note_id: h.score for h in hits}
        for i, s in zip(ids, scores):  # scores of found notes are the exact max-sim
            if i in common:
                assert abs(common[i] - s) < 1e-5
    assert np.mean(rec) >= 0.9


def test_adaptive_recall_against_full_dim(emb):
    r = Retriever(emb, shortlist=100, shortlist_dim=32)
    rec = []
    for nid in emb.note_ids[:80]:
        ids, scores = reference(emb, nid, "note", 96, 10)
        hits = r.search(nid, k=10, strategy="adaptive")
        rec.append(recall(hits, ids))
        if recall(hits, ids) == 1:  # re-ranked at full dim: exact full-dim scores
            np.testing.assert_allclose([h.score for h in hits], scores, rtol=1e-5)
    assert np.mean(rec) >= 0.95


def test_global_plus_local_definition(emb):
    r = Retriever(emb, shortlist=50)
    nid = next(n for n in emb.note_ids if emb.query(n).regions is not None)
    g = maxsim_scores(emb.query(nid).note, emb.note, None, len(emb))
    short = top_k(g, 50, exclude=[emb.row(nid)])
    loc = maxsim_scores(emb.query(nid).regions, emb.region, emb.region_owner, len(emb))
    combined = g[short] + np.where(np.isfinite(loc[short]), loc[short], 0)
    order = short[np.lexsort((short, -combined))][:10]
    hits = r.search(nid, k=10, strategy="global+local")
    assert [h.note_id for h in hits] == [emb.note_ids[i] for i in order]
    # the score is the mean of the two cosines (weight 1): on the 0-1 cosine scale, same order
    by_slot = dict(zip(short.tolist(), combined.tolist()))
    np.testing.assert_allclose([h.score for h in hits], [by_slot[i] / 2 for i in order], rtol=1e-5)
    assert all(-1 <= h.score <= 1 for h in hits)


def test_query_without_the_needed_part_fails_clearly(emb):
    from uninote.embeddings import QueryEmbedding
    from uninote.errors import UniNoteError

    r = Retriever(emb)
    q = QueryEmbedding(text=emb.text[0])
    assert r.search(q, k=3, granularity="text", modality="text")
    with pytest.raises(UniNoteError, match="no vectors"):
        r.search(q, k=3, granularity="region", strategy="local", modality="image")
    # the contract: a text query meets every index with its text vector
    assert r.search(q, k=3, granularity="region", strategy="local", modality="text")


def test_unknown_strategy_and_dim(emb):
    r = Retriever(emb)
    with pytest.raises(ValueError, match="unknown strategy"):
        r.search("n00001", strategy="fast")
    with pytest.raises(ValueError, match="dim"):
        r.search("n00001", dim=1000)


@pytest.mark.parametrize("n,k", [(5, 10), (300, 10), (100_000, 10), (100_000, 200), (6_401, 7)])
def test_top_indices_matches_a_full_sort(n, k):
    from uninote.index.vectors import top_indices

    rng = np.random.default_rng(n + k)
    scores = rng.standard_normal(n).astype(np.float32)
    scores[rng.choice(n, n // 10, replace=False)] = -np.inf  # notes without vectors
    scores[rng.choice(n, min(n, 30), replace=False)] = 0.5  # ties: lower index first
    expected = top_k(scores, k)
    np.testing.assert_array_equal(top_indices(scores, k), expected)
