import math

import pytest

from uninote.eval.metrics import mrr_at_k, ndcg_at_k, r_cap_at_k

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
