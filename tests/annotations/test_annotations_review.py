"""Review: changing one's own grade, disagreements, adjudication honoured by the export and RL data,
and agreement that appears after the first few grades of a campaign."""

from __future__ import annotations

import pytest

from annotations.agreement import agreement_report, disagreements
from annotations.errors import InvalidGrade
from annotations.export import export_rewards, load_rewards
from annotations.queue import LabelQueue, QueueConfig
from uninote.train.rl_data import _from_open_store, from_rewards_dir

FULL = "dim=full/granularity=note/strategy=exact"
D64 = "dim=64/granularity=note/strategy=exact"


def test_changing_a_grade_updates_in_place_with_history_and_the_export_reads_the_new_one(store, tmp_path):
    store.submit_grade("ana", "n0", "n1", 1, comment="looks off")
    store.submit_grade("ana", "n0", "n1", 3, comment="same product, other photo")  # from the review
    [j] = store.judgments(annotator="ana")
    assert (j.grade, j.comment, j.revision) == (3, "same product, other photo", 2)
    assert [h["action"] for h in store.judgment_history("ana")] == ["create", "update"]
    manifest = export_rewards(store, tmp_path / "out")
    assert manifest["counts"]["judgments"] == 1
    assert load_rewards(tmp_path / "out").pairs[0]["mean_grade"] == 3.0


def test_disagreements_list_spreads_of_two_or_more(store):
    store.submit_grade("ana", "n0", "n1", 0)
    store.submit_grade("bob", "n0", "n1", 3)
    store.submit_grade("ana", "n0", "n2", 1)
    store.submit_grade("bob", "n0", "n2", 2)  # spread 1: not a disagreement
    store.submit_grade("ana", "n0", "n3", 3)  # one annotator only
    rows = disagreements(store.judgments(), store.adjudicated_grades())
    assert rows == [dict(query_id="n0", candidate_id="n1", grades={"ana": 0, "bob": 3}, spread=3,
                         adjudicated=None)]
    store.adjudicate("rita", "n0", "n1", 2)
    assert disagreements(store.judgments(), store.adjudicated_grades())[0]["adjudicated"] == 2


def test_adjudication_is_preferred_by_the_export_and_rl_data(store, tmp_path):
    for name, grade in (("ana", 0), ("bob", 3), ("cy", 3)):
        store.submit_grade(name, "n0", "n1", grade)
    store.submit_grade("ana", "n0", "n2", 2)
    before = export_rewards(store, tmp_path / "before")
    assert _from_open_store(store, "mean").grades["n0"]["n1"] == pytest.approx(2.0)

    adj = store.adjudicate("rita", "n0", "n1", 1, comment="a related item, not the same")
    assert (adj.reviewer, adj.grade, adj.grades) == ("rita", 1, {"ana": 0, "bob": 3, "cy": 3})
    store.adjudicate("rita", "n0", "n1", 0)  # deciding again replaces the decision
    assert [(a.grade, a.comment) for a in store.adjudications()] == [(0, None)]

    manifest = export_rewards(store, tmp_path / "after")
    assert manifest["fingerprint"] != before["fingerprint"] and manifest["counts"]["adjudicated"] == 1
    data = load_rewards(tmp_path / "after")
    pair = next(p for p in data.pairs if p["candidate_id"] == "n1")
    assert (pair["grades"], pair["mean_grade"], pair["majority_grade"], pair["adjudicated_grade"]) == \
        ([0, 3, 3], 0.0, 0, 0)
    assert data.groups[0]["candidates"] == ["n2", "n1"]  # the reviewer's 0 ranks n1 below n2
    assert data.preferences[0]["chosen"] == "n2"
    for method in ("mean", "posterior"):
        assert _from_open_store(store, method).grades["n0"]["n1"] == 0.0
        assert from_rewards_dir(tmp_path / "after", method).grades["n0"]["n1"] == 0.0
    assert from_rewards_dir(tmp_path / "before", "mean").grades["n0"]["n1"] == pytest.approx(2.0)


def test_adjudication_refusals_store_nothing(store):
    with pytest.raises(InvalidGrade, match="nobody graded"):
        store.adjudicate("rita", "n0", "n1", 2)
    store.submit_grade("ana", "n0", "n1", 2)
    with pytest.raises(InvalidGrade, match="0, 1, 2 or 3"):
        store.adjudicate("rita", "n0", "n1", 4)
    with pytest.raises(InvalidGrade, match="integer"):
        store.adjudicate("rita", "n0", "n1", 2.7)
    assert store.adjudications() == []


def test_agreement_report_says_why_a_figure_is_missing(store):
    store.submit_grade("ana", "n0", "n1", 2)
    report = agreement_report(store.judgments())
    assert report["alpha"] is None and report["alpha_reason"].startswith("needs pairs graded by two annotators: 0 so far")
    assert report["kappa_reason"] == "needs two annotators: 1 so far"
    store.submit_grade("bob", "n0", "n2", 2)
    assert agreement_report(store.judgments())["kappa_reason"] == "needs pairs graded by two annotators: 0 so far"
    store.submit_grade("bob", "n0", "n1", 2)
    report = agreement_report(store.judgments())
    assert report["alpha"] is None and "undefined" in report["alpha_reason"]  # one shared pair, one grade
    for c, (a, b) in zip(("n3", "n4", "n5", "n6"), ((0, 0), (3, 3), (1, 2), (3, 2))):
        store.submit_grade("ana", "n0", c, a)
        store.submit_grade("bob", "n0", c, b)
    report = agreement_report(store.judgments())
    assert report["alpha_reason"] is None and report["kappa_reason"] is None
    assert report["units"] == 5 and report["pairwise"][0]["n"] == 5 and report["alpha"] > 0.5


def _campaign(store, **kw) -> LabelQueue:
    q = LabelQueue(store, QueueConfig(k=5, boundary_window=1, random_per_query=0, **kw))
    cands = [f"n{i}" for i in range(20)]
    neighbours = {D64: {f"n{j}": [c for c in cands if c != f"n{j}"][j % 3:] for j in range(20)},
                  FULL: {f"n{j}": [c for c in cands if c != f"n{j}"] for j in range(20)}}
    q.add_from_neighbours(neighbours, model_version="v1")
    return q


def _shared_after(store, q: LabelQueue, n_each: int) -> int:
    for _ in range(n_each):  # two annotators taking turns
        for name in ("ana", "bob"):
            task = q.next_task(name)
            q.submit(name, task, (int(task.candidate_id[1:]) + (name == "bob")) % 4)
    return agreement_report(store.judgments())["units"]


def test_the_first_tasks_of_a_campaign_go_to_two_annotators(store):
    q = _campaign(store, overlap=0.2, overlap_first=20, seed=3)
    assert _shared_after(store, q, 15) >= 14  # 30 grades: nearly all shared, agreement shows
    report = agreement_report(store.judgments())
    assert report["alpha"] is not None and report["pairwise"][0]["kappa_quadratic"] is not None


def test_without_the_warm_up_the_same_grades_share_few_pairs(store):
    q = _campaign(store, overlap=0.2, overlap_first=0, seed=3)
    assert _shared_after(store, q, 15) < 10


def test_overlap_zero_never_shares_a_task(store):
    q = _campaign(store, overlap=0.0, overlap_first=20)
    assert _shared_after(store, q, 10) == 0


def test_warm_up_is_per_campaign_and_bounded(store):
    q = _campaign(store, overlap=0.2, overlap_first=4, seed=3)
    _shared_after(store, q, 10)
    opened = {j.task_id for j in store.judgments()}
    from annotations.models import LabelTaskRow

    with store.database.read() as s:
        required = {t.id: t.required_annotations for t in s.query(LabelTaskRow).filter(LabelTaskRow.id.in_(opened))}
    assert sum(r == 2 for r in required.values()) >= 4
    with pytest.raises(Exception, match="overlap_first"):
        QueueConfig(overlap_first=-1).validate()
