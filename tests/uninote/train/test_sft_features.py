import numpy as np
import pytest
import torch

from uninote.model import UniNoteModel
from uninote.model.testing import tiny_config
from uninote.train import features as F
from uninote.train.sft_data import add_region_index, batch_order, pair_index, pair_table


@pytest.fixture
def corpus(synthetic_corpus):
    return synthetic_corpus(20)


def test_cache_is_written_once_and_reused(corpus, monkeypatch):
    model = UniNoteModel(tiny_config())
    first = F.corpus_features(corpus, model, progress=False)
    calls = {"n": 0}
    real = F.extract_features
    monkeypatch.setattr(F, "extract_features", lambda *a, **k: (calls.__setitem__("n", calls["n"] + 1), real(*a, **k))[1])
    again = F.corpus_features(corpus, model, progress=False)
    assert calls["n"] == 0 and torch.equal(first.region, again.region)
    assert first.info["skipped_images"] == 1
    # a different image size is a different fingerprint
    assert F.fingerprint(corpus, tiny_config(image_size=48)) != F.fingerprint(corpus, tiny_config())


def test_feature_batch_remaps_owners(corpus):
    feats = F.corpus_features(corpus, UniNoteModel(tiny_config()), progress=False)
    b = feats.batch([3, 1])
    owners = feats.image_owner.numpy()
    assert b["image"].shape[0] == (owners == 3).sum() + (owners == 1).sum()
    assert list(b["image_owner"]) == [0] * (owners == 3).sum() + [1] * (owners == 1).sum()


def test_pair_index_masks_known_relevant_in_batch_candidates(corpus):
    table = pair_table(corpus, hard_negatives=2)
    pairs = np.arange(len(table.q))[:10]
    union, idx = pair_index(table, pairs)
    for i, qi in enumerate(table.q[pairs]):
        for j, pj in enumerate(table.p[pairs]):
            if i != j:
                assert bool(idx["in_batch_mask"][i, j]) == (int(pj) not in table.relevant[int(qi)] and pj != qi
                                                            and pj != table.p[pairs][i])
    assert (union[idx["q"]] == table.q[pairs]).all() and (union[idx["p"]] == table.p[pairs]).all()
    feats = F.corpus_features(corpus, UniNoteModel(tiny_config()), progress=False)
    batch = feats.batch(union)
    photos = add_region_index(idx, batch["image_owner"], len(union), 4)
    assert len(photos) <= 2 * len(pairs)
    valid = idx["region_q"][:, 0] >= 0
    assert (idx["region_q"][valid] % 4 == torch.arange(4)).all()


def test_batch_order_is_seeded_and_shards_across_ranks():
    a = batch_order(50, 8, 2, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, batch_order(50, 8, 2, seed=3)))
    r0, r1 = batch_order(50, 4, 1, 3, rank=0, world_size=2), batch_order(50, 4, 1, 3, rank=1, world_size=2)
    assert not set(np.concatenate(r0)) & set(np.concatenate(r1))


def test_pairs_fall_back_to_qrels(corpus):
    corpus.pairs = []
    table = pair_table(corpus, hard_negatives=1)
    assert len(table.q) == len(corpus.qrels)
