"""Grades inferred from collected ones (``propagate_grades``), checked by hand."""

import pytest

from uninote.errors import ConfigError
from uninote.train.rl_data import GradedPairs, propagate_grades

GRADED = GradedPairs({"q": {"a": 3.0, "b": 1.0, "c": 2.0}, "a": {"q": 2.0}}, n_judgments=5, corpus="fashion",
                     source="store", info={"x": 1}, order=[("q", "a"), ("q", "b"), ("q", "c"), ("a", "q")])


def test_sym_mirrors_every_grade_and_collected_grades_win():
    out = propagate_grades(GRADED, "sym")
    assert out.grades == {"q": {"a": 3.0, "b": 1.0, "c": 2.0}, "a": {"q": 2.0}, "b": {"q": 1.0}, "c": {"q": 2.0}}
    assert (out.n_judgments, out.corpus, out.source, out.info, out.order) == (5, "fashion", "store+sym", {"x": 1},
                                                                              GRADED.order)


def test_top_lets_a_near_duplicate_inherit_its_querys_other_grades():
    out = propagate_grades(GRADED, "top")  # a is graded 3 >= 2.5 for q: a inherits q's grades of b and c
    assert out.grades == {"q": {"a": 3.0, "b": 1.0, "c": 2.0}, "a": {"q": 2.0, "b": 1.0, "c": 2.0}}
    assert propagate_grades(GRADED, "top", top=3.5).grades == GRADED.grades


def test_both_averages_several_inferences_for_one_pair():
    graded = GradedPairs({"q": {"a": 3.0, "b": 0.0}, "p": {"a": 3.0, "b": 2.0}})
    out = propagate_grades(graded, "both")
    assert out.grades["a"] == {"q": 3.0, "p": 3.0, "b": pytest.approx(1.0)}  # (0 + 2) / 2 from q and p
    assert out.grades["b"] == {"q": 0.0, "p": 2.0}
    assert all(c != q for q, cs in out.grades.items() for c in cs)


def test_unknown_mode_fails_naming_the_choices():
    with pytest.raises(ConfigError, match=r"unknown grade propagation 'mirror'; expected one of \('sym', 'top', 'both'\)"):
        propagate_grades(GRADED, "mirror")
