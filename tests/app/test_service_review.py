"""The service's annotator workflow: guidelines, comments, a review that changes a grade, the
double-press guard, agreement with its reasons, disagreements and reviewer-only adjudication."""

from __future__ import annotations

import dataclasses
import time

import pytest

from annotations.errors import TooSoon
from annotations.guidelines import DEFAULT_GUIDELINES
from uninote.errors import ConfigError, UniNoteError
from uninote.service import ServiceConfig


def _pair(service, who):
    task = service.next_pair(who)
    return task, {"task_id": task.id, "rank": task.rank, "dim": task.dim}


def test_guidelines_default_and_from_a_file(service, tmp_path, monkeypatch):
    assert service.guidelines() == DEFAULT_GUIDELINES
    assert all(f"**{g} ·" in DEFAULT_GUIDELINES for g in range(4))
    own = tmp_path / "guide.md"
    own.write_text("**3** means the same shoe.\n")
    monkeypatch.setattr(service.config, "guidelines", str(own))
    assert service.guidelines() == "**3** means the same shoe."
    monkeypatch.setenv("UNINOTE_GUIDELINES", str(tmp_path / "missing.md"))
    with pytest.raises(ConfigError, match="missing.md: no such file"):
        ServiceConfig.from_env()


def test_comment_then_review_changes_the_grade_keeping_its_context(service):
    who = "rev-ana"
    task, ctx = _pair(service, who)
    service.grade(who, task.query_id, task.candidate_id, 1, dict(ctx, comment="colour differs"))
    [mine] = service.my_grades(who)
    assert (mine.grade, mine.comment, mine.task_id) == (1, "colour differs", task.id)
    changed = service.change_grade(who, task.query_id, task.candidate_id, 2, "same cut, other colour")
    assert (changed.grade, changed.comment, changed.revision) == (2, "same cut, other colour", 2)
    assert (changed.dim, changed.rank, changed.model_version) == (mine.dim, mine.rank, mine.model_version)
    assert [j.grade for j in service.store.judgments(annotator=who)] == [2]
    with pytest.raises(UniNoteError, match="has not graded"):
        service.change_grade(who, task.query_id, "n1" if task.candidate_id != "n1" else "n2", 3)


def test_a_double_key_press_does_not_grade_the_next_pair(service):
    who = "rev-bob"
    task, ctx = _pair(service, who)
    time.sleep(service.config.min_view_s)
    service.grade(who, task.query_id, task.candidate_id, 3, ctx, interactive=True)
    nxt, nctx = _pair(service, who)  # the second press arrives right after the next pair is shown
    with pytest.raises(TooSoon, match="after this pair was shown"):
        service.grade(who, nxt.query_id, nxt.candidate_id, 3, nctx, interactive=True)
    with pytest.raises(TooSoon, match="graded 3"):  # the same pair, changed at once
        service.grade(who, task.query_id, task.candidate_id, 2, ctx, interactive=True)
    assert len(service.store.judgments(annotator=who)) == 1
    service.grade(who, task.query_id, task.candidate_id, 3, ctx, interactive=True)  # a retry: no-op
    time.sleep(service.config.min_view_s)
    service.grade(who, nxt.query_id, nxt.candidate_id, 0, nctx, interactive=True)  # after a look: saved
    assert len(service.store.judgments(annotator=who)) == 2
    service.grade(who, "n3", "n4", 1)  # programs (the API) are not held back


def _ungraded_pair(service) -> tuple[str, str]:
    """A pair no other test graded on the shared service (its store outlives one test)."""
    graded = {(j.query_id, j.candidate_id) for j in service.store.judgments()}
    ids = [n.note_id for n in service.corpus.notes]
    return next((q, c) for q in ids for c in ids if q != c and (q, c) not in graded and (c, q) not in graded)


def test_agreement_disagreements_and_adjudication(service, monkeypatch):
    q, c = _ungraded_pair(service)
    for who, grade in (("rev-c", 0), ("rev-d", 3)):
        service.grade(who, q, c, grade)
    assert "needs" not in str(service.agreement()["alpha_reason"] or "")
    rows = [r for r in service.disagreements() if (r["query_id"], r["candidate_id"]) == (q, c)]
    assert rows and rows[0]["grades"] == {"rev-c": 0, "rev-d": 3} and rows[0]["adjudicated"] is None
    monkeypatch.setattr(service, "config", dataclasses.replace(service.config, reviewers=("rita",)))
    with pytest.raises(UniNoteError, match="rev-c is not a reviewer"):
        service.adjudicate("rev-c", q, c, 3)
    assert service.can_adjudicate("rita") and not service.can_adjudicate("rev-c")
    service.adjudicate("rita", q, c, 1, "a related item")
    rows = [r for r in service.disagreements() if (r["query_id"], r["candidate_id"]) == (q, c)]
    assert rows[0]["adjudicated"] == 1
