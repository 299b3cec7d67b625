import numpy as np
import pytest
import torch

from uninote.model import UniNoteModel
from uninote.model import features as F
from uninote.model.testing import tiny_config
from uninote.train.sft_data import add_region_index, batch_order, pair_index, pair_table


@pytest.fixture
def corpus(synthetic_corpus):
    return synthetic_corpus(20)


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
