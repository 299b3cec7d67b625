"""The query itself and its exact duplicates are dropped by default and kept on request."""

import pytest

from conftest import with_duplicate
from uninote.index import Retriever

STRATEGIES = ["exact", "ann", "adaptive", "local", "global+local"]


@pytest.fixture(scope="module")
def dup(emb):
    src = next(i for i, n in enumerate(emb.note_ids) if emb.query(n).regions is not None)
    return with_duplicate(emb, src, src + 7), emb.note_ids[src], emb.note_ids[src + 7]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_self_and_duplicate_excluded(dup, strategy):
    e, src, copy = dup
    r = Retriever(e)
    for dim in (32, 96):
        ids = [h.note_id for h in r.search(src, k=10, dim=dim, strategy=strategy)]
        assert src not in ids and copy not in ids and len(ids) == 10
        # a QueryEmbedding (not an id) of the same content excludes both too
        ids = [h.note_id for h in r.search(e.query(src), k=10, dim=dim, strategy=strategy)]
        assert src not in ids and copy not in ids and len(ids) == 10


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_keep_flag_returns_them_first(dup, strategy):
    e, src, copy = dup
    r = Retriever(e)
    hits = r.search(src, k=10, strategy=strategy, exclude_self=False)
    assert {h.note_id for h in hits[:2]} == {src, copy}


def test_near_duplicate_is_not_excluded(emb):
    import numpy as np

    from uninote.embeddings import l2_normalize

    r = Retriever(emb)
    q = emb.query("n00010")
    q.note = l2_normalize(q.note + 0.05 * np.random.default_rng(0).standard_normal(q.note.shape))
    ids = [h.note_id for h in r.search(q, k=5)]
    assert ids[0] == "n00010"  # similar, not identical: still a neighbour
