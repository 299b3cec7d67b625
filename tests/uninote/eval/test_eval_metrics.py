import math

import pytest
import torch

from uninote.eval.metrics import mrr_at_k, ndcg_at_k, ndcg_at_k_batch, r_cap_at_k

GRADES = {"a": 0, "b": 3, "c": 1, "d": 2}


def test_ndcg_hand_computed():
    # DCG = 0/log2(2) + 7/log2(3) + 1/log2(4); ideal = 7/1 + 3/log2(3) + 1/log2(4)
    dcg = 7 / math.log2(3) + 1 / 2
    ideal = 7 + 3 / math.log2(3) + 1 / 2
    assert ndcg_at_k(["a", "b", "c"], GRADES, k=3) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["b", "d", "c"], GRADES, k=3) == pytest.approx(1.0)


def test_ndcg_is_none_without_relevant_items():
    assert ndcg_at_k(["a"], {"a": 0}, k=10) is None
    assert ndcg_at_k(["x"], {}, k=10) is None


def test_ndcg_ignores_items_past_k():
    assert ndcg_at_k(["a", "x", "b"], GRADES, k=2) == 0.0


def test_r_cap_counts_top_grade_items_capped_by_k():
    grades = {"a": 3, "b": 3, "c": 3, "d": 1}
    assert r_cap_at_k(["a", "d", "b"], grades, k=3) == pytest.approx(2 / 3)
    # three top-grade items but k=2: the cap is min(k, 3) = 2
    assert r_cap_at_k(["a", "b"], grades, k=2) == pytest.approx(1.0)
    assert r_cap_at_k(["d", "x"], grades, k=2) == 0.0
    assert r_cap_at_k(["a"], {"a": 0}, k=2) is None


def test_mrr_respects_min_grade():
    assert mrr_at_k(["a", "c", "b"], GRADES, k=10) == pytest.approx(1 / 2)
    assert mrr_at_k(["a", "c", "b"], GRADES, k=10, min_grade=2) == pytest.approx(1 / 3)
    assert mrr_at_k(["a", "c", "b"], GRADES, k=2, min_grade=2) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_batched_ndcg_equals_ndcg_at_k_on_random_pools(seed):
    g = torch.Generator().manual_seed(seed)
    q, p, group = 7, 12, 6
    k = [3, 5, 10, 20, 12][seed]  # shorter than, equal to and longer than the pools
    grades = torch.randint(0, 4, (q, p), generator=g).float() * (torch.rand(q, p, generator=g) > 0.4)
    grades[1] = torch.rand(p, generator=g) * 3  # fractional grades (reward-model predictions)
    grades[0] = 0.0  # no relevant candidate: undefined
    valid = torch.rand(q, p, generator=g) > 0.2
    valid[:, :4] = True
    length = int(valid.sum(1).min())  # every query ranks this many of its valid candidates
    noise = torch.rand(q, group, p, generator=g).masked_fill(~valid.unsqueeze(1), -1.0)
    rankings = noise.topk(length, dim=-1).indices  # (Q, G, length) random orders of valid candidates
    batch = ndcg_at_k_batch(rankings, grades, valid, k)
    for i in range(q):
        pool = {j: float(grades[i, j]) for j in range(p) if valid[i, j]}
        for s in range(group):
            want = ndcg_at_k(rankings[i, s].tolist(), pool, k)
            got = float(batch[i, s])
            assert (want is None and math.isnan(got)) or got == pytest.approx(want, abs=1e-5)
    assert math.isnan(float(batch[0, 0])) and not math.isnan(float(batch[1, 0]))
