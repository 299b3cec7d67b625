"""Incremental add/remove: added notes are found at once, removed ones never come back."""

import numpy as np
import pytest

from uninote.embeddings import QueryEmbedding, l2_normalize
from uninote.errors import UniNoteError
from uninote.index import IndexConfig, Retriever, UnknownNoteError

CASES = [("flat", "exact"), ("hnsw", "ann"), ("ivfpq", "ann"), ("hnsw", "local"), ("flat", "adaptive"),
         ("flat", "global+local")]


def new_note(emb, like: str, seed: int = 0) -> QueryEmbedding:
    """A fresh note very close to ``like`` (so it must be its top neighbour)."""
    rng = np.random.default_rng(seed)
    q = emb.query(like)
    jitter = lambda a: None if a is None else l2_normalize(a + 0.01 * rng.standard_normal(a.shape))  # noqa: E731
    return QueryEmbedding(jitter(q.note), jitter(q.text), jitter(q.images), jitter(q.regions), q.region_image)


def build(emb, kind):
    r = Retriever(emb, IndexConfig(kind=kind, ivf_nprobe=16))
    r.build(dims=[32, 96])
    return r


@pytest.mark.parametrize("kind,strategy", CASES)
def test_added_note_found_at_once(emb, kind, strategy):
    r = build(emb, kind)
    like = next(n for n in emb.note_ids if emb.query(n).regions is not None)
    r.add("fresh", new_note(emb, like))
    for dim in (32, 96):
        hits = r.search(like, k=5, dim=dim, strategy=strategy)
        assert hits[0].note_id == "fresh"
    assert r.search("fresh", k=1, strategy=strategy)[0].note_id == like


@pytest.mark.parametrize("kind,strategy", CASES)
def test_removed_note_never_returns(emb, kind, strategy, tmp_path):
    r = build(emb, kind)
    like = next(n for n in emb.note_ids if emb.query(n).regions is not None)
    before = [h.note_id for h in r.search(like, k=10, strategy=strategy)]
    for victim in before[:3]:
        r.remove(victim)
    for g in ("note", "region", "image"):
        for dim in (32, 96):
            ids = [h.note_id for h in r.search(like, k=10, dim=dim, granularity=g, strategy=strategy)]
            assert not set(before[:3]) & set(ids) and len(ids) == 10
    with pytest.raises(UnknownNoteError):
        r.search(before[0])
    r.save(tmp_path / "idx")
    loaded = Retriever.load(tmp_path / "idx", model_version=emb.model_version)
    ids = [h.note_id for h in loaded.search(like, k=10, strategy=strategy)]
    assert not set(before[:3]) & set(ids)
    assert before[0] not in loaded


def test_remove_everything_then_add(emb):
    small = emb.truncate(96)
    r = Retriever(small, IndexConfig(kind="hnsw"))
    r.build(dims=[96], granularities=["note"])
    for nid in small.note_ids[1:]:
        r.remove(nid)
    assert [h.note_id for h in r.search(small.note_ids[0], k=10)] == []
    r.add("x", new_note(emb, small.note_ids[5]))
    assert [h.note_id for h in r.search(small.note_ids[0], k=10, strategy="ann")] == ["x"]


def test_added_note_survives_save_load(emb, tmp_path):
    r = build(emb, "hnsw")
    r.add("fresh", new_note(emb, "n00020"))
    r.remove("n00021")
    r.add("n00021", new_note(emb, "n00030", seed=2))  # re-added id gets a new slot
    r.save(tmp_path / "i")
    loaded = Retriever.load(tmp_path / "i")
    assert loaded.search("n00020", k=1, strategy="ann")[0].note_id == "fresh"
    assert loaded.search("n00030", k=1)[0].note_id == "n00021"
    assert len(loaded) == len(emb) + 1


def test_compact_drops_dead_vectors(emb):
    r = build(emb, "hnsw")
    r.remove("n00002")
    c = r.compact()
    assert len(c) == len(emb) - 1 and "n00002" not in c.note_ids
    assert [h.note_id for h in c.search("n00003", k=10)] == [h.note_id for h in r.search("n00003", k=10)]


def test_add_rejects_bad_input(emb):
    r = Retriever(emb)
    with pytest.raises(UniNoteError, match="already indexed"):
        r.add("n00001", emb.query("n00001"))
    with pytest.raises(UniNoteError, match="dim"):
        r.add("y", QueryEmbedding(note=np.ones(8, np.float32), text=np.ones(8, np.float32)))
    with pytest.raises(UniNoteError, match="note and text"):
        r.add("z", QueryEmbedding(text=emb.text[0]))
    assert "y" not in r and "z" not in r and len(r) == len(emb)
    r.add("n00001", new_note(emb, "n00001"), replace=True)
    assert len(r) == len(emb)
