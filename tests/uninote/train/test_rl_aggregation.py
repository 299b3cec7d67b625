"""Noisy-grade aggregation: error-rate estimate and posterior grade, checked by hand."""

import pytest

from uninote.errors import ConfigError
from uninote.train.rl_data import aggregate, estimate_error_rate, posterior_grade


def test_error_rate_zero_without_disagreement_or_overlap():
    assert estimate_error_rate([[3, 3], [1, 1, 1]]) == 0.0
    assert estimate_error_rate([]) == 0.0


def test_error_rate_inverts_the_disagreement_formula():
    # e = 0.25 -> two graders disagree with d = 1 - 0.75**2 - 0.25**2 / 3 = 5/12
    groups = [[3, 3]] * 7 + [[3, 0]] * 5
    assert estimate_error_rate(groups) == pytest.approx(0.25)
    # three graders on one pair = three annotator pairs: (2,2) agree, (2,0) and (2,0) disagree
    assert estimate_error_rate([[2, 2, 0]]) == pytest.approx(0.75 * (1 - (1 - 4 / 3 * 2 / 3) ** 0.5))


def test_posterior_grade_by_hand():
    prior = [0.1, 0.1, 0.2, 0.6]
    e = 0.25
    # observed 3: P(true=g) ~ prior[g] * (0.75 if g == 3 else 0.25/3)
    w = [0.1 / 12, 0.1 / 12, 0.2 / 12, 0.6 * 0.75]
    assert posterior_grade([3], e, prior) == pytest.approx(sum(g * x for g, x in enumerate(w)) / sum(w))
    # observed 0 once: pulled up towards the prior
    w0 = [0.1 * 0.75, 0.1 / 12, 0.2 / 12, 0.6 / 12]
    assert posterior_grade([0], e, prior) == pytest.approx(sum(g * x for g, x in enumerate(w0)) / sum(w0))
    # two agreeing zeros: much more confident than one
    assert posterior_grade([0, 0], e, prior) < posterior_grade([0], e, prior)


def test_posterior_grade_falls_back_to_mean():
    assert posterior_grade([3, 0], 0.0, [0.25] * 4) == 1.5
    assert posterior_grade([2.5], 0.3, [0.25] * 4) == 2.5  # non-integer grade


def test_aggregate_posterior_equals_mean_without_noise_and_reports_the_rate():
    records = [("q", "a", 3), ("q", "b", 0), ("q", "c", 2), ("q", "c", 2)]
    info = {}
    assert aggregate(records, "posterior", info) == aggregate(records)
    assert info["estimated_error_rate"] == 0.0
    noisy = records + [("q", "a", 0)]
    info = {}
    grades, n = aggregate(noisy, "posterior", info)
    assert n == 5 and info["estimated_error_rate"] > 0
    assert 0.0 < grades["q"]["b"] < grades["q"]["c"] < 3.0
    with pytest.raises(ConfigError):
        aggregate(records, "median")
