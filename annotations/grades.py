"""Grades: submit (idempotent, with history), undo, read back, per-annotator statistics.

Mixed into ``AnnotationStore``; every method opens its own transaction through ``self._db``.
"""

from __future__ import annotations

import json
import operator
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotations.agreement import median_interval
from annotations.convert import JUDGMENT_FIELDS, judgment_state, to_judgment
from annotations.errors import InvalidGrade, UnknownNote
from annotations.models import (
    AnnotatorRow,
    JudgmentHistoryRow,
    JudgmentRow,
    LabelTaskRow,
    NoteRow,
    TaskAssignmentRow,
)
from annotations.types import AnnotatorStats, Judgment

MAX_NAME = 128


def clean_annotator(name: str) -> str:
    """The annotator name, stripped; ``InvalidGrade`` when empty or too long."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidGrade("annotator name is empty: sign in with a name before grading")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InvalidGrade(f"annotator name is {len(name)} characters, over {MAX_NAME}")
    return name


def clean_grade(grade: Any) -> int:
    """The grade as an int in 0..3; ``InvalidGrade`` for anything else (bools, 2.5, '2')."""
    if isinstance(grade, bool):
        raise InvalidGrade(f"grade must be an integer 0-3, got {grade!r}")
    try:
        value = operator.index(grade)
    except TypeError:
        raise InvalidGrade(f"grade must be an integer 0-3, got {grade!r}") from None
    if not 0 <= value <= 3:
        raise InvalidGrade(f"grade must be 0, 1, 2 or 3, got {value}")
    return value


def _optional_int(name: str, value: Any, minimum: int) -> int | None:
    """``value`` as an int >= ``minimum`` (numpy ints welcome), or None; ``InvalidGrade`` else."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise InvalidGrade(f"{name} must be an integer >= {minimum} or None, got {value!r}") from None
    if number < minimum:
        raise InvalidGrade(f"{name} must be an integer >= {minimum} or None, got {number}")
    return number


def annotator_id(session: Session, name: str, create: bool = True) -> int | None:
    """The id of annotator ``name`` (created when ``create``), inside the caller's transaction."""
    found = session.execute(select(AnnotatorRow.id).where(AnnotatorRow.name == name)).scalar()
    if found is not None or not create:
        return found
    row = AnnotatorRow(name=name, created_at=time.time())
    session.add(row)
    session.flush()
    return row.id


def _log(session, aid, row_or_pair, action, before, after) -> None:
    q, c = row_or_pair
    session.add(JudgmentHistoryRow(
        annotator_id=aid, query_id=q, candidate_id=c, action=action, undone=False, at=time.time(),
        before_json=None if before is None else json.dumps(before),
        after_json=None if after is None else json.dumps(after),
    ))  # fmt: skip


def _mark_task_done(session: Session, task_id: int, aid: int, now: float) -> None:
    if session.get(LabelTaskRow, task_id) is None:
        raise InvalidGrade(f"task {task_id} does not exist")
    row = session.execute(
        select(TaskAssignmentRow).where(
            TaskAssignmentRow.task_id == task_id, TaskAssignmentRow.annotator_id == aid
        )
    ).scalar_one_or_none()
    if row is None:
        session.add(TaskAssignmentRow(task_id=task_id, annotator_id=aid, status="done",
                                      leased_at=now, lease_expires_at=now, finished_at=now))
    else:
        row.status, row.finished_at = "done", now


class GradesMixin:
    """Grade methods of ``AnnotationStore``."""

    def ensure_annotator(self, name: str) -> str:
        """Register annotator ``name`` (idempotent) and return the cleaned name."""
        name = clean_annotator(name)
        with self._db.write() as session:
            annotator_id(session, name)
        return name

    def submit_grade(
        self, annotator: str, query_id: str, candidate_id: str, grade: int, *,
        model_version: str | None = None, dim: int | None = None, granularity: str | None = None,
        strategy: str | None = None, rank: int | None = None, comment: str | None = None,
        task_id: int | None = None,
    ) -> Judgment:  # fmt: skip
        """Record ``annotator``'s grade (0-3) of ``candidate_id`` as an answer to ``query_id``.

        Idempotent: one current row per (annotator, query, candidate). Re-submitting the same
        grade (double click, retry) changes nothing; a different grade (or a new comment) updates
        the row and logs the old state in the history, so ``undo`` can restore it. The context
        (model version, dim, granularity, strategy, rank) is the one the pair was first graded in
        unless the grade changes. ``task_id`` marks that queue task done for this annotator.

        Raises ``InvalidGrade`` (nothing stored) for a grade outside 0-3, an empty annotator, an
        unknown note id (``UnknownNote``) or a query graded against itself.
        """
        name = clean_annotator(annotator)
        value = clean_grade(grade)
        dim, rank = _optional_int("dim", dim, 1), _optional_int("rank", rank, 0)
        query_id, candidate_id = str(query_id), str(candidate_id)
        if query_id == candidate_id:
            raise InvalidGrade(f"note {query_id!r} cannot be graded against itself")
        context = dict(model_version=model_version, dim=dim, granularity=granularity,
                       strategy=strategy, rank=rank, task_id=task_id)  # fmt: skip
        for attempt in range(2):  # a unique-key race (PostgreSQL, two processes) retries once
            try:
                with self._db.write() as session:
                    return self._submit(session, name, query_id, candidate_id, value, comment, context)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _submit(self, session, name, query_id, candidate_id, value, comment, context) -> Judgment:
        for note_id in (query_id, candidate_id):
            if session.get(NoteRow, note_id) is None:
                raise UnknownNote(f"unknown note id {note_id!r}: register the corpus or upload first")
        aid = annotator_id(session, name)
        now = time.time()
        if context["task_id"] is None:  # a grade counts for the queue however it was given
            context["task_id"] = session.execute(select(LabelTaskRow.id).where(
                LabelTaskRow.query_id == query_id, LabelTaskRow.candidate_id == candidate_id)).scalar()
        if context["task_id"] is not None:
            _mark_task_done(session, context["task_id"], aid, now)
        row = session.execute(
            select(JudgmentRow).where(
                JudgmentRow.annotator_id == aid,
                JudgmentRow.query_id == query_id,
                JudgmentRow.candidate_id == candidate_id,
            )
        ).scalar_one_or_none()
        if row is None:
            row = JudgmentRow(annotator_id=aid, query_id=query_id, candidate_id=candidate_id,
                              grade=value, comment=comment, created_at=now, updated_at=now,
                              revision=1, **context)  # fmt: skip
            session.add(row)
            session.flush()
            _log(session, aid, (query_id, candidate_id), "create", None, judgment_state(row))
            return to_judgment(row, name)
        same_comment = comment is None or comment == row.comment
        if row.grade == value and same_comment:
            return to_judgment(row, name)  # a retry or double click: nothing changes
        before = judgment_state(row)
        row.grade, row.updated_at, row.revision = value, now, row.revision + 1
        if comment is not None:
            row.comment = comment
        if before["grade"] != value:
            for key, val in context.items():
                if key != "task_id" or val is not None:
                    setattr(row, key, val)
        session.flush()
        _log(session, aid, (query_id, candidate_id), "update", before, judgment_state(row))
        return to_judgment(row, name)

    def change_grade(self, annotator: str, query_id: str, candidate_id: str, grade: int,
                     comment: str | None = None) -> Judgment:
        """Change ``annotator``'s own earlier grade of a pair (from a review of past grades),
        keeping the context it was shown in; logged in the history like any update (``undo``
        restores the old grade). ``InvalidGrade`` when they never graded the pair."""
        name = clean_annotator(annotator)
        value = clean_grade(grade)
        with self._db.write() as session:
            aid = annotator_id(session, name, create=False)
            row = None if aid is None else session.execute(select(JudgmentRow).where(
                JudgmentRow.annotator_id == aid, JudgmentRow.query_id == query_id,
                JudgmentRow.candidate_id == candidate_id)).scalar_one_or_none()  # fmt: skip
            if row is None:
                raise InvalidGrade(f"{name} has not graded ({query_id}, {candidate_id}): nothing to change")
            context = {k: getattr(row, k) for k in ("model_version", "dim", "granularity", "strategy",
                                                     "rank", "task_id")}
            return self._submit(session, name, query_id, candidate_id, value, comment, context)

    def undo(self, annotator: str) -> Judgment | None:
        """Undo ``annotator``'s last grade action (create or update) that is not yet undone.

        An update is rolled back to the previous grade; a first grade is removed (its queue task,
        if any, is leased back to the annotator so it comes up next). Both are logged in the
        history. Returns the judgment as it was before the undo (the grade taken back), or None
        when there is nothing left to undo. Repeated calls walk further back.
        """
        name = clean_annotator(annotator)
        with self._db.write() as session:
            aid = annotator_id(session, name, create=False)
            if aid is None:
                return None
            last = session.execute(
                select(JudgmentHistoryRow)
                .where(JudgmentHistoryRow.annotator_id == aid,
                       JudgmentHistoryRow.action.in_(("create", "update")),
                       JudgmentHistoryRow.undone.is_(False))
                .order_by(JudgmentHistoryRow.id.desc()).limit(1)
            ).scalar_one_or_none()  # fmt: skip
            if last is None:
                return None
            row = session.execute(
                select(JudgmentRow).where(
                    JudgmentRow.annotator_id == aid,
                    JudgmentRow.query_id == last.query_id,
                    JudgmentRow.candidate_id == last.candidate_id,
                )
            ).scalar_one_or_none()
            before = json.loads(last.before_json) if last.before_json else None
            taken_back = to_judgment(row, name) if row is not None else None
            current = judgment_state(row) if row is not None else None
            now = time.time()
            if before is None and row is not None:
                self._release_task_after_undo(session, row.task_id, aid, now)
                session.delete(row)
            elif before is not None and row is not None:
                for key in JUDGMENT_FIELDS:
                    if key not in ("created_at", "revision"):
                        setattr(row, key, before[key])
                row.updated_at, row.revision = now, row.revision + 1
            last.undone = True
            session.flush()
            after = judgment_state(row) if (row is not None and before is not None) else None
            _log(session, aid, (last.query_id, last.candidate_id), "undo", current, after)
            return taken_back

    def _release_task_after_undo(self, session, task_id, aid, now) -> None:
        if task_id is None:
            return
        row = session.execute(
            select(TaskAssignmentRow).where(
                TaskAssignmentRow.task_id == task_id, TaskAssignmentRow.annotator_id == aid
            )
        ).scalar_one_or_none()
        if row is not None:
            row.status, row.finished_at = "leased", None
            row.leased_at, row.lease_expires_at = now, now + self.lease_s

    def judgments(
        self, annotator: str | None = None, query_id: str | None = None,
        candidate_id: str | None = None,
    ) -> list[Judgment]:  # fmt: skip
        """Current judgments (one per annotator and pair), oldest first, optionally filtered."""
        stmt = select(JudgmentRow, AnnotatorRow.name).join(
            AnnotatorRow, AnnotatorRow.id == JudgmentRow.annotator_id
        )
        if annotator is not None:
            stmt = stmt.where(AnnotatorRow.name == annotator.strip())
        if query_id is not None:
            stmt = stmt.where(JudgmentRow.query_id == query_id)
        if candidate_id is not None:
            stmt = stmt.where(JudgmentRow.candidate_id == candidate_id)
        with self._db.read() as session:
            return [to_judgment(r, n) for r, n in session.execute(stmt.order_by(JudgmentRow.id))]

    def judgment_history(self, annotator: str | None = None) -> list[dict[str, Any]]:
        """The append-only action log (create/update/undo/migrated) as plain dicts, oldest first."""
        stmt = select(JudgmentHistoryRow, AnnotatorRow.name).join(
            AnnotatorRow, AnnotatorRow.id == JudgmentHistoryRow.annotator_id
        )
        if annotator is not None:
            stmt = stmt.where(AnnotatorRow.name == annotator.strip())
        with self._db.read() as session:
            return [
                dict(id=h.id, annotator=n, query_id=h.query_id, candidate_id=h.candidate_id,
                     action=h.action, undone=h.undone, at=h.at,
                     before=json.loads(h.before_json) if h.before_json else None,
                     after=json.loads(h.after_json) if h.after_json else None)
                for h, n in session.execute(stmt.order_by(JudgmentHistoryRow.id))
            ]  # fmt: skip

    def annotators(self) -> list[str]:
        """All annotator names, in order of first appearance."""
        with self._db.read() as session:
            return list(session.execute(select(AnnotatorRow.name).order_by(AnnotatorRow.id)).scalars())

    def annotator_stats(self, annotator: str, max_gap_s: float = 600.0) -> AnnotatorStats:
        """Counts, grade distribution and speed (median seconds between consecutive first grades,
        gaps over ``max_gap_s`` treated as breaks and left out) of one annotator."""
        name = clean_annotator(annotator)
        with self._db.read() as session:
            aid = annotator_id(session, name, create=False)
            if aid is None:
                return AnnotatorStats(name, 0, {g: 0 for g in range(4)}, None, None, None, 0)
            rows = session.execute(
                select(JudgmentRow.grade, JudgmentRow.created_at).where(JudgmentRow.annotator_id == aid)
            ).all()
            skipped = session.execute(
                select(func.count()).select_from(TaskAssignmentRow).where(
                    TaskAssignmentRow.annotator_id == aid, TaskAssignmentRow.status == "skipped"
                )
            ).scalar_one()
        counts = {g: 0 for g in range(4)}
        for grade, _ in rows:
            counts[grade] += 1
        times = sorted(t for _, t in rows)
        return AnnotatorStats(
            annotator=name, n_grades=len(rows), grade_counts=counts,
            median_seconds=median_interval(times, max_gap_s),
            first_at=times[0] if times else None, last_at=times[-1] if times else None,
            n_skipped=skipped,
        )  # fmt: skip
