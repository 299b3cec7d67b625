"""Agreement statistics against hand-computed values, a published example and brute force."""

from __future__ import annotations

import random
from itertools import product
from types import SimpleNamespace

import numpy as np
import pytest

from annotations.agreement import (
    annotator_summary,
    krippendorff_alpha,
    median_interval,
    overall_alpha,
    pairwise_agreement,
    weighted_kappa,
)


def test_kappa_hand_computed():
    # a=[3,1,0], b=[3,2,0]. O: (3,3),(1,2),(0,0) each 1/3. Marginals a: p0=p1=p3=1/3;
    # b: q0=q2=q3=1/3. Linear w=|i-j|/3: sum w*O = (1/3)(1/3) = 1/9.
    # sum w*E = (1/9) * sum_{i in {0,1,3}, j in {0,2,3}} |i-j|/3 = (1/9)(1/3)(0+2+3+1+1+2+3+1+0) = 13/27
    # kappa_lin = 1 - (1/9)/(13/27) = 1 - 3/13 = 10/13.
    # Quadratic w=(i-j)^2/9: obs = (1/3)(1/9) = 1/27; exp = (1/81)(0+4+9+1+1+4+9+1+0) = 29/81
    # kappa_quad = 1 - (1/27)/(29/81) = 1 - 3/29 = 26/29.
    assert weighted_kappa([3, 1, 0], [3, 2, 0], "linear") == pytest.approx(10 / 13)
    assert weighted_kappa([3, 1, 0], [3, 2, 0], "quadratic") == pytest.approx(26 / 29)
    # a=[0,0,1,1], b=[0,1,1,1]: obs = 1/4, exp = .5*.75 + .5*.25 = .5 -> 0.5 (both weightings)
    assert weighted_kappa([0, 0, 1, 1], [0, 1, 1, 1], "linear") == pytest.approx(0.5)


def test_kappa_edge_cases():
    assert weighted_kappa([2, 2], [2, 2]) is None  # no expected disagreement: undefined
    assert weighted_kappa([], []) is None
    assert weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same items"):
        weighted_kappa([1], [1, 2])


def _kappa_brute(a, b, power):
    k = 4
    o = np.zeros((k, k))
    for x, y in zip(a, b):
        o[x, y] += 1
    o /= o.sum()
    e = np.outer(o.sum(1), o.sum(0))
    w = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) ** power
    return 1 - (w * o).sum() / (w * e).sum()


def test_kappa_matches_matrix_reference_on_random_data():
    rng = random.Random(0)
    for _ in range(20):
        a = [rng.randint(0, 3) for _ in range(30)]
        b = [min(3, max(0, x + rng.choice([-1, 0, 0, 1]))) for x in a]
        assert weighted_kappa(a, b, "linear") == pytest.approx(_kappa_brute(a, b, 1))
        assert weighted_kappa(a, b, "quadratic") == pytest.approx(_kappa_brute(a, b, 2))


KRIPP_2011 = list(zip(  # Krippendorff (2011), 4 observers x 12 units, None = missing
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
))


@pytest.mark.parametrize("level, published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_alpha_published_example(level, published):
    assert krippendorff_alpha(KRIPP_2011, level) == pytest.approx(published, abs=5e-4)


def test_alpha_hand_computed_two_raters():
    # units (0,0),(1,1),(0,1); interval. Coincidences: o00=2, o11=2, o01=o10=1; n0=n1=3, n=6.
    # D_o = (1+1)/6 = 1/3; D_e = (3*3 + 3*3)/(6*5) = 18/30 = 3/5; alpha = 1 - (1/3)/(3/5) = 4/9
    assert krippendorff_alpha([(0, 0), (1, 1), (0, 1)], "interval") == pytest.approx(4 / 9)
    assert krippendorff_alpha([(0, 0), (3, 3), (1, 1)], "ordinal") == pytest.approx(1.0)
    assert krippendorff_alpha([(2,), (1, None)]) is None  # no pairable values


def test_alpha_interval_equals_pairwise_definition_brute_force():
    rng = random.Random(1)
    units = [[rng.randint(0, 3) for _ in range(rng.randint(2, 4))] for _ in range(25)]
    # brute force: alpha = 1 - (n-1) * sum_u (1/(m_u-1)) sum_{i!=j in u} d^2 / sum_{all i!=j} d^2
    values = [v for u in units for v in u]
    n = len(values)
    within = sum(sum((x - y) ** 2 for x, y in product(u, u)) / (len(u) - 1) for u in units)
    total = sum((x - y) ** 2 for x, y in product(values, values))
    expected = 1 - (n - 1) * within / total
    assert krippendorff_alpha(units, "interval") == pytest.approx(expected)


def _j(annotator, q, c, grade, t=0.0):
    return SimpleNamespace(annotator=annotator, query_id=q, candidate_id=c, grade=grade, created_at=t)


def test_pairwise_agreement_and_summary():
    js = [_j("ana", "q", "a", 3, 0), _j("ana", "q", "b", 1, 4), _j("ana", "q", "c", 0, 10),
          _j("bob", "q", "a", 3, 0), _j("bob", "q", "b", 2, 2), _j("bob", "q", "c", 0, 1000),
          _j("cy", "q", "z", 1, 0)]  # fmt: skip
    (row,) = pairwise_agreement(js)
    assert (row["annotator_a"], row["annotator_b"], row["n"]) == ("ana", "bob", 3)
    assert row["exact"] == pytest.approx(2 / 3)
    assert row["kappa_linear"] == pytest.approx(10 / 13)
    assert overall_alpha(js)["units"] == 3
    summary = {r["annotator"]: r for r in annotator_summary(js, max_gap_s=600)}
    assert summary["ana"]["n"] == 3 and summary["ana"]["grade_1"] == 1
    assert summary["ana"]["median_seconds"] == pytest.approx(5.0)  # gaps 4 and 6
    assert summary["bob"]["median_seconds"] == pytest.approx(2.0)  # 998 s is a break
    assert summary["cy"]["median_seconds"] is None


def test_median_interval():
    assert median_interval([10, 0, 3, 4]) == 3  # sorted 0,3,4,10 -> gaps 3,1,6
    assert median_interval([1.0]) is None
