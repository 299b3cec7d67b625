"""The label queue: what each annotator grades next.

Build tasks from the model's own neighbour lists (``planning.plan_tasks``: disagreement between
dims/strategies, ranks near the cut-off, agreed top-k, a random baseline), store them once
(deduplicated per (query, candidate)), then hand them out with leases::

    queue = LabelQueue(store, QueueConfig(k=10, overlap=0.2))
    queue.add_from_neighbours({"dim=64/granularity=note/strategy=exact": {q: [c1, c2, ...]},
                               "dim=full/granularity=note/strategy=exact": {q: [...]}},
                              model_version="v3")
    task = queue.next_task("ana")          # Task | None, leased to ana for config.lease_s
    queue.submit("ana", task, grade=2)     # -> Judgment (store.submit_grade with the context)
    queue.skip("ana", task.id)
    queue.source_report()                  # tasks and grades contributed by each source

Agreement early: ``next_task`` hands out tasks another annotator has started (an overlap task
that still needs grades) before fresh ones, and the first ``QueueConfig.overlap_first`` tasks
handed out from a campaign (tasks planned from one model version) become overlap tasks, so two
annotators share pairs from their first grades on (when ``overlap`` is 0, no task is ever shared).

Guarantees of ``next_task``: never a pair the annotator already graded or skipped; an overlap task
(``required_annotations`` >= 2) goes to different annotators; a task is never held by more
annotators than it needs (single-annotator tasks by one), because hand-out runs inside the
store's serialised write transaction (``BEGIN IMMEDIATE`` on SQLite, ``FOR UPDATE SKIP LOCKED``
on PostgreSQL). A lease that expires (annotator walked away) frees the task for someone else;
calling ``next_task`` again while holding a live lease returns the same task (double click).
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping, Sequence

from sqlalchemy import and_, exists, func, or_, select

from annotations.errors import AnnotationError, TooSoon, UnknownNote
from annotations.grades import annotator_id, clean_annotator
from annotations.models import JudgmentRow, LabelTaskRow, NoteRow, TaskAssignmentRow
from annotations.planning import SOURCES, PlannedTask, QueueConfig, Setting, plan_tasks
from annotations.store import AnnotationStore
from annotations.types import Judgment, Task

__all__ = ["LabelQueue", "QueueConfig", "Setting", "PlannedTask", "plan_tasks", "SOURCES"]
CANDIDATE_POOL = 50  # tasks considered per hand-out when preferring queries with few grades


def _to_task(row: LabelTaskRow, annotator: str | None, expires: float | None) -> Task:
    return Task(
        id=row.id, query_id=row.query_id, candidate_id=row.candidate_id, source=row.source,
        priority=row.priority, required_annotations=row.required_annotations,
        model_version=row.model_version, dim=row.dim, granularity=row.granularity,
        strategy=row.strategy, rank=row.rank, annotator=annotator, lease_expires_at=expires,
    )  # fmt: skip


class LabelQueue:
    """Label tasks in the store, handed out to annotators with leases."""

    def __init__(self, store: AnnotationStore, config: QueueConfig | None = None):
        self.store = store
        self.config = (config or QueueConfig(lease_s=store.lease_s)).validate()
        self._db = store.database

    def add_from_neighbours(
        self, neighbours: Mapping[Any, Mapping[str, Sequence[str]]], model_version: str | None = None
    ) -> dict[str, dict[str, int]]:
        """Plan tasks from neighbour lists and store the new ones (existing pairs are kept as
        they are). All or nothing: an unknown note id raises ``UnknownNote`` and adds nothing.
        Returns ``{source: {"added": n, "existing": m}}``."""
        return self.add_tasks(plan_tasks(neighbours, self.config), model_version)

    def add_tasks(self, planned: Sequence[PlannedTask], model_version: str | None = None):
        """Store already planned tasks; see ``add_from_neighbours``. A task whose setting names a
        model version is stored with that version, the others with ``model_version``."""
        report = {s: {"added": 0, "existing": 0} for s in SOURCES}
        ids = sorted({t.query_id for t in planned} | {t.candidate_id for t in planned})
        now = time.time()
        with self._db.write() as session:
            known = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                known |= set(session.execute(
                    select(NoteRow.note_id).where(NoteRow.note_id.in_(chunk))).scalars())  # fmt: skip
            missing = [i for i in ids if i not in known]
            if missing:
                raise UnknownNote(f"neighbour lists name {len(missing)} unregistered note id(s), "
                                  f"e.g. {missing[:5]}; register the corpus first")  # fmt: skip
            few = [t for t in planned if t.required_annotations < 1]
            if few:
                raise AnnotationError(f"a task needs at least one grade; {len(few)} planned with "
                                      f"required_annotations={few[0].required_annotations}")
            existing = set(session.execute(select(LabelTaskRow.query_id, LabelTaskRow.candidate_id)).all())
            for t in planned:
                if (t.query_id, t.candidate_id) in existing:
                    report[t.source]["existing"] += 1
                    continue
                existing.add((t.query_id, t.candidate_id))
                session.add(LabelTaskRow(
                    query_id=t.query_id, candidate_id=t.candidate_id, source=t.source,
                    priority=t.priority, required_annotations=t.required_annotations,
                    model_version=t.setting.version or model_version, dim=t.setting.dim, granularity=t.setting.granularity,
                    strategy=t.setting.strategy, rank=t.rank, detail_json=json.dumps(t.detail),
                    created_at=now,
                ))  # fmt: skip
                report[t.source]["added"] += 1
        return report

    def next_task(self, annotator: str) -> Task | None:
        """Lease the most useful open task to ``annotator``; None when nothing is left for them."""
        name = clean_annotator(annotator)
        with self._db.write() as session:
            aid = annotator_id(session, name)
            now = time.time()
            held = self._held(session, aid, now)
            if held is not None:
                return held
            row = self._pick(session, aid, now)
            if row is None:
                return None
            expires = now + self.config.lease_s
            mine = session.execute(
                select(TaskAssignmentRow).where(
                    TaskAssignmentRow.task_id == row.id, TaskAssignmentRow.annotator_id == aid)
            ).scalar_one_or_none()  # fmt: skip
            if mine is None:
                session.add(TaskAssignmentRow(task_id=row.id, annotator_id=aid, status="leased",
                                              leased_at=now, lease_expires_at=expires))  # fmt: skip
            else:  # their own earlier lease had expired
                mine.status, mine.leased_at, mine.lease_expires_at = "leased", now, expires
            return _to_task(row, name, expires)

    def _held(self, session, aid: int, now: float) -> Task | None:
        """A live lease the annotator still holds (refreshed), unless they graded it meanwhile."""
        rows = session.execute(
            select(TaskAssignmentRow, LabelTaskRow)
            .join(LabelTaskRow, LabelTaskRow.id == TaskAssignmentRow.task_id)
            .where(TaskAssignmentRow.annotator_id == aid, TaskAssignmentRow.status == "leased",
                   TaskAssignmentRow.lease_expires_at > now)
            .order_by(TaskAssignmentRow.leased_at)
        ).all()  # fmt: skip
        for assignment, task in rows:
            graded = session.execute(select(JudgmentRow.id).where(
                JudgmentRow.annotator_id == aid, JudgmentRow.query_id == task.query_id,
                JudgmentRow.candidate_id == task.candidate_id)).first()  # fmt: skip
            if graded:
                assignment.status, assignment.finished_at = "done", now
                continue
            assignment.lease_expires_at = now + self.config.lease_s
            return _to_task(task, self._name(session, aid), assignment.lease_expires_at)
        return None

    @staticmethod
    def _name(session, aid: int) -> str:
        from annotations.models import AnnotatorRow

        return session.get(AnnotatorRow, aid).name

    @staticmethod
    def _by_others(aid: int, now: float) -> list:
        """Conditions on an assignment: another annotator finished it or holds a live lease."""
        a = TaskAssignmentRow
        return [a.annotator_id != aid, or_(a.status == "done", and_(a.status == "leased", a.lease_expires_at > now))]

    @classmethod
    def _others(cls, aid: int, now: float):
        """How many other annotators finished or hold a live lease on the task (a subquery)."""
        a = TaskAssignmentRow
        return (select(func.count()).select_from(a).where(a.task_id == LabelTaskRow.id, *cls._by_others(aid, now))
                .scalar_subquery())  # fmt: skip

    @classmethod
    def _touched_by_others(cls, aid: int, now: float):
        """Ids of tasks another annotator finished or holds a live lease on (a subquery). Read from
        the assignments, which are few, rather than testing every task: the same set as
        ``_others(aid, now) > 0``."""
        return select(TaskAssignmentRow.task_id).where(*cls._by_others(aid, now))

    @classmethod
    def _open_for(cls, aid: int, now: float) -> list:
        """Conditions for a task ``aid`` may be handed: it needs more annotators than those who
        finished or hold a live lease on it (others), and ``aid`` never graded or skipped it."""
        a = TaskAssignmentRow
        active = cls._others(aid, now)
        mine = exists().where(a.task_id == LabelTaskRow.id, a.annotator_id == aid,
                              a.status.in_(("done", "skipped")))  # fmt: skip
        graded = exists().where(
            JudgmentRow.annotator_id == aid, JudgmentRow.query_id == LabelTaskRow.query_id,
            JudgmentRow.candidate_id == LabelTaskRow.candidate_id)  # fmt: skip
        return [active < LabelTaskRow.required_annotations, ~mine, ~graded]

    def _pick(self, session, aid: int, now: float) -> LabelTaskRow | None:
        """Tasks others started first (they finish overlap pairs), then by priority plus the
        few-grades bonus; a fresh task among a campaign's first ``overlap_first`` becomes overlap."""
        def candidates(*extra):
            return session.execute(
                select(LabelTaskRow).where(*self._open_for(aid, now), *extra)
                .order_by(LabelTaskRow.priority.desc(), LabelTaskRow.id)
                .limit(CANDIDATE_POOL).with_for_update(skip_locked=True, of=LabelTaskRow)
            ).scalars().all()  # fmt: skip

        started = candidates(LabelTaskRow.id.in_(self._touched_by_others(aid, now)))
        pool = started or candidates()
        if not pool:
            return None
        queries = {t.query_id for t in pool}
        per_query = dict(session.execute(
            select(JudgmentRow.query_id, func.count()).where(JudgmentRow.query_id.in_(queries))
            .group_by(JudgmentRow.query_id)).all())  # fmt: skip
        bonus = self.config.few_grades_bonus
        row = max(pool, key=lambda t: (t.priority + bonus / (1 + per_query.get(t.query_id, 0)), -t.id))
        if not started and self._warming_up(session, row):
            row.required_annotations = self.config.overlap_annotators
        return row

    def _warming_up(self, session, row: LabelTaskRow) -> bool:
        """Whether fresh task ``row`` is among the first ``overlap_first`` of its campaign (the
        tasks planned from its model version) to be handed out."""
        cfg = self.config
        if cfg.overlap == 0 or cfg.overlap_first == 0 or row.required_annotations >= cfg.overlap_annotators:
            return False
        same = (LabelTaskRow.model_version.is_(None) if row.model_version is None
                else LabelTaskRow.model_version == row.model_version)
        opened = session.execute(
            select(func.count(func.distinct(TaskAssignmentRow.task_id)))
            .join(LabelTaskRow, LabelTaskRow.id == TaskAssignmentRow.task_id).where(same)
        ).scalar_one()  # fmt: skip
        return opened < cfg.overlap_first

    def skip(self, annotator: str, task_id: int) -> None:
        """``annotator`` passes on a task: it never comes back to them and is freed for others."""
        name = clean_annotator(annotator)
        with self._db.write() as session:
            if session.get(LabelTaskRow, task_id) is None:
                raise AnnotationError(f"task {task_id} does not exist")
            aid = annotator_id(session, name)
            now = time.time()
            row = session.execute(select(TaskAssignmentRow).where(
                TaskAssignmentRow.task_id == task_id, TaskAssignmentRow.annotator_id == aid)
            ).scalar_one_or_none()  # fmt: skip
            if row is None:
                session.add(TaskAssignmentRow(task_id=task_id, annotator_id=aid, status="skipped",
                                              leased_at=now, lease_expires_at=now, finished_at=now))
            elif row.status != "done":
                row.status, row.finished_at = "skipped", now

    def check_not_too_soon(self, annotator: str, query_id: str, candidate_id: str, grade: int,
                           task_id: int | None, min_seconds: float) -> None:
        """Refuse (``TooSoon``, nothing stored) a grade from a person at a keyboard that arrives
        less than ``min_seconds`` after the task was handed to them, or that changes their grade
        of the pair less than ``min_seconds`` after they gave it: a double key press would
        otherwise grade the next pair, or change this one, without anyone seeing it."""
        if min_seconds <= 0:
            return
        name, now = clean_annotator(annotator), time.time()
        with self._db.read() as session:
            aid = annotator_id(session, name, create=False)
            if aid is None:
                return
            shown = None if task_id is None else session.execute(select(TaskAssignmentRow.leased_at).where(
                TaskAssignmentRow.task_id == task_id, TaskAssignmentRow.annotator_id == aid,
                TaskAssignmentRow.status == "leased")).scalar()  # fmt: skip
            last = session.execute(select(JudgmentRow.grade, JudgmentRow.updated_at).where(
                JudgmentRow.annotator_id == aid, JudgmentRow.query_id == query_id,
                JudgmentRow.candidate_id == candidate_id)).first()  # fmt: skip
        if shown is not None and now - shown < min_seconds:
            raise TooSoon(f"not saved: the grade came {now - shown:.2f} s after this pair was shown "
                          "(a double key press?); look at the pair, then grade it again")
        if last is not None and last.grade != grade and now - last.updated_at < min_seconds:
            raise TooSoon(f"not saved: this pair was graded {last.grade} {now - last.updated_at:.2f} s ago "
                          "(a double key press?); grade it again to change it")

    def submit(self, annotator: str, task: Task, grade: int, comment: str | None = None) -> Judgment:
        """Grade a handed-out task: ``store.submit_grade`` with the task's context."""
        return self.store.submit_grade(
            annotator, task.query_id, task.candidate_id, grade, model_version=task.model_version,
            dim=task.dim, granularity=task.granularity, strategy=task.strategy, rank=task.rank,
            comment=comment, task_id=task.id,
        )  # fmt: skip

    def pending(self, annotator: str | None = None) -> int:
        """Tasks that still need grades (for ``annotator``: ones they could still be handed)."""
        now = time.time()
        with self._db.read() as session:
            if annotator is None:
                done = (select(func.count()).select_from(TaskAssignmentRow)
                        .where(TaskAssignmentRow.task_id == LabelTaskRow.id,
                               TaskAssignmentRow.status == "done").scalar_subquery())  # fmt: skip
                stmt = select(func.count()).select_from(LabelTaskRow).where(
                    done < LabelTaskRow.required_annotations)
                return session.execute(stmt).scalar_one()
            aid = annotator_id(session, clean_annotator(annotator), create=False) or -1
            # A task nobody has an assignment on and ``aid`` never graded is open to ``aid`` (every
            # task needs a grade: ``add`` refuses fewer): count all tasks, less the closed ones
            # among those few (no per-task subqueries over the whole table).
            a = TaskAssignmentRow
            graded = (select(LabelTaskRow.id).join(JudgmentRow, and_(
                JudgmentRow.query_id == LabelTaskRow.query_id, JudgmentRow.candidate_id == LabelTaskRow.candidate_id))
                .where(JudgmentRow.annotator_id == aid))  # fmt: skip
            touched = or_(LabelTaskRow.id.in_(select(a.task_id)), LabelTaskRow.id.in_(graded))
            count = select(func.count()).select_from(LabelTaskRow)
            total = session.execute(count).scalar_one()
            # touched less touched-and-open: SQLite runs the positive conditions faster than their negation
            touched_n = session.execute(count.where(touched)).scalar_one()
            still_open = session.execute(count.where(touched, *self._open_for(aid, now))).scalar_one()
            return total - touched_n + still_open

    def queries(self) -> set[str]:
        """Every note that already has label tasks as a query (so a refill can plan new ones)."""
        with self._db.read() as session:
            return set(session.execute(select(LabelTaskRow.query_id).distinct()).scalars())

    def source_report(self) -> list[dict[str, Any]]:
        """Per source: tasks, grades received, distinct pairs graded, mean grade, share of grades
        >= 2 (relevant), skips. Shows what each selection strategy contributes."""
        with self._db.read() as session:
            tasks = dict(session.execute(
                select(LabelTaskRow.source, func.count()).group_by(LabelTaskRow.source)).all())
            graded = session.execute(
                select(LabelTaskRow.source, func.count(JudgmentRow.id),
                       func.count(func.distinct(LabelTaskRow.id)), func.avg(JudgmentRow.grade),
                       func.sum(func.cast(JudgmentRow.grade >= 2, type_=JudgmentRow.grade.type)))
                .join(JudgmentRow, and_(JudgmentRow.query_id == LabelTaskRow.query_id,
                                        JudgmentRow.candidate_id == LabelTaskRow.candidate_id))
                .group_by(LabelTaskRow.source)).all()  # fmt: skip
            skips = dict(session.execute(
                select(LabelTaskRow.source, func.count())
                .join(TaskAssignmentRow, TaskAssignmentRow.task_id == LabelTaskRow.id)
                .where(TaskAssignmentRow.status == "skipped").group_by(LabelTaskRow.source)).all())
        by_source = {s: (n, pairs, mean, pos) for s, n, pairs, mean, pos in graded}
        report = []
        for source in SOURCES:
            n, pairs, mean, pos = by_source.get(source, (0, 0, None, 0))
            report.append(dict(
                source=source, tasks=tasks.get(source, 0), grades=n, pairs_graded=pairs,
                mean_grade=None if mean is None else round(float(mean), 3),
                relevant_share=None if not n else round((pos or 0) / n, 3),
                skipped=skips.get(source, 0),
            ))  # fmt: skip
        return report
