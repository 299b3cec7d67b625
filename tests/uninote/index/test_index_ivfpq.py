"""IVF-PQ defaults: recall against exact search where the old defaults fell short, the shortlist
size, query-time tuning, and loading an index saved with the old config."""

import json

import numpy as np
import pytest

from uninote.errors import ConfigError
from uninote.index import IndexConfig, Retriever
from uninote.index import ann as ann_mod
from uninote.index import strategies
from uninote.index.synthetic import synthetic_embeddings

N, DIM = 20_000, 32


def old_defaults(n: int) -> IndexConfig:
    """IndexConfig IVF-PQ defaults before tuning: 4*sqrt(n) cells, 20k training points, nprobe 16, R=4."""
    return IndexConfig(kind="ivfpq", ivf_nlist=int(4 * np.sqrt(n)), ivf_train_size=20_000, ivf_nprobe=16,
                       rerank_factor=4)


@pytest.fixture(scope="module")
def big():
    """20k notes in 100 clusters of ~200 at 32 dims (4-byte PQ codes): the PQ order inside a
    cluster is rough, so a 40-note shortlist misses true neighbours."""
    return synthetic_embeddings(N, dim=DIM, images=(0, 0), n_clusters=100, seed=3)


def ann_recall(emb, config: IndexConfig, queries: int = 100) -> float:
    r, exact = Retriever(emb, config), Retriever(emb, IndexConfig(kind="flat"))
    rec = []
    for nid in emb.note_ids[:queries]:
        got = {h.note_id for h in r.search(nid, k=10, strategy="ann")}
        want = {h.note_id for h in exact.search(nid, k=10, strategy="exact")}
        rec.append(len(got & want) / len(want))
    return float(np.mean(rec))


def test_default_ivfpq_recall_beats_old_defaults(big):
    new = ann_recall(big, IndexConfig(kind="ivfpq"))
    old = ann_recall(big, old_defaults(N))
    assert new >= 0.95, new
    assert old < 0.95, old  # the case really separates the two


def test_shortlist_follows_rerank_factor(emb, monkeypatch):
    asked = []
    real = strategies.ann_search

    def spy(index, queries, k, config):
        asked.append(k)
        return real(index, queries, k, config)

    monkeypatch.setattr(strategies, "ann_search", spy)
    r = Retriever(emb, IndexConfig(kind="ivfpq"))
    first = {}
    for factor in (1, 10, 25):
        r.config = r.config.tuned(rerank_factor=factor)
        asked.clear()
        r.search(emb.note_ids[0], k=5, strategy="ann")
        first[factor] = asked[0]
    assert first[1] >= 5
    assert first[10] == 10 * first[1] and first[25] == 25 * first[1]


def test_nprobe_is_read_at_query_time(emb):
    r = Retriever(emb, IndexConfig(kind="ivfpq", ivf_nprobe=1))
    r.search(emb.note_ids[0], k=5, strategy="ann")
    index = r.ann_index("note", emb.note.shape[1])
    assert index.nprobe == 1
    r.config = r.config.tuned(ivf_nprobe=3)
    r.search(emb.note_ids[0], k=5, strategy="ann")
    assert index.nprobe == min(3, index.nlist)


def test_tuned_rejects_build_time_fields():
    with pytest.raises(ConfigError, match="build-time"):
        IndexConfig().tuned(ivf_nlist=64)
    with pytest.raises(ConfigError):
        IndexConfig().tuned(rerank_factor=0)
    assert IndexConfig().tuned(ivf_nprobe=7).ivf_nprobe == 7


def test_auto_nlist_and_training_sample():
    cfg = IndexConfig()
    assert ann_mod.ivf_nlist(1_000_000, cfg) == 8000
    assert ann_mod.ivf_nlist(10_000, cfg) == 10_000 // 39  # clamp: >= 39 vectors per cell
    assert ann_mod.ivf_train_size(1_000_000, 8000, cfg) == 160_000
    assert ann_mod.ivf_train_size(10_000, 256, cfg) == 10_000  # capped at n
    assert ann_mod.ivf_train_size(1_000_000, 8000, IndexConfig(ivf_train_size=20_000)) == 20_000


def test_index_saved_with_old_config_loads(emb, tmp_path):
    """A manifest written before ivf_train_size existed (old defaults) still loads and searches."""
    r = Retriever(emb, IndexConfig(kind="ivfpq", ivf_nprobe=16, rerank_factor=4))
    before = r.search(emb.note_ids[0], k=5, strategy="ann")
    out = r.save(tmp_path / "idx")
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["config"]["ivf_train_size"]
    path.write_text(json.dumps(manifest))
    loaded = Retriever.load(out)
    assert loaded.config.rerank_factor == 4 and loaded.config.ivf_train_size == 0
    after = loaded.search(emb.note_ids[0], k=5, strategy="ann")
    assert [h.note_id for h in after] == [h.note_id for h in before]
