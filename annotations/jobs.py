"""Training jobs (the RL trainer worker's queue) and model versions, mixed into ``AnnotationStore``.

A job moves queued -> running -> succeeded | failed. ``claim_job`` is atomic (``BEGIN IMMEDIATE``
on SQLite, ``FOR UPDATE SKIP LOCKED`` plus a guarded update on PostgreSQL), so two workers never
run the same job. A worker that dies stops heart-beating; ``requeue_stale_jobs`` puts its job back
in the queue (or fails it once ``max_attempts`` claims have been used).
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable

from sqlalchemy import select, update

from annotations.convert import dumps, to_job, to_model_version
from annotations.errors import AnnotationError, JobError
from annotations.models import JobRow, ModelVersionRow
from annotations.types import Job, ModelVersion


class JobsMixin:
    """Job and model-version methods of ``AnnotationStore``."""

    # -- model versions -------------------------------------------------------------------
    def register_model_version(
        self, version: str, path: str, *, parent: str | None = None, corpus: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> ModelVersion:  # fmt: skip
        """Record a checkpoint (idempotent: re-registering updates path, parent, corpus and merges
        metrics). The first version registered becomes active."""
        if not version or not str(version).strip():
            raise AnnotationError("model version name is empty")
        metrics_text = dumps(metrics or {}, "metrics")
        with self._db.write() as session:
            row = session.get(ModelVersionRow, version)
            any_active = session.execute(
                select(ModelVersionRow.version).where(ModelVersionRow.active.is_(True))
            ).first()
            if row is None:
                row = ModelVersionRow(version=version, path=str(path), parent=parent, corpus=corpus,
                                      metrics_json=metrics_text, active=any_active is None,
                                      created_at=time.time())  # fmt: skip
                session.add(row)
            else:
                merged = {**to_model_version(row).metrics, **(metrics or {})}
                row.path, row.metrics_json = str(path), dumps(merged, "metrics")
                row.parent = parent if parent is not None else row.parent
                row.corpus = corpus if corpus is not None else row.corpus
            session.flush()
            return to_model_version(row)

    def list_model_versions(self) -> list[ModelVersion]:
        """All registered versions, oldest first."""
        with self._db.read() as session:
            rows = session.execute(select(ModelVersionRow).order_by(ModelVersionRow.created_at))
            return [to_model_version(r) for r in rows.scalars()]

    def set_active_version(self, version: str) -> ModelVersion:
        """Make ``version`` the one the app serves; ``AnnotationError`` if it is not registered."""
        with self._db.write() as session:
            row = session.get(ModelVersionRow, version)
            if row is None:
                known = [v for v in session.execute(select(ModelVersionRow.version)).scalars()]
                raise AnnotationError(f"unknown model version {version!r}; registered: {known}")
            session.execute(update(ModelVersionRow).values(active=False))
            row.active = True
            session.flush()
            return to_model_version(row)

    def active_version(self) -> ModelVersion | None:
        """The active version, None when none is registered."""
        with self._db.read() as session:
            row = session.execute(
                select(ModelVersionRow).where(ModelVersionRow.active.is_(True))
            ).scalar_one_or_none()
            return to_model_version(row) if row is not None else None

    # -- jobs -----------------------------------------------------------------------------
    def enqueue_job(self, kind: str, params: dict[str, Any], *, max_attempts: int = 3) -> int:
        """Queue a job of ``kind`` (e.g. ``"rl"``) with JSON ``params``; returns its id."""
        if not kind:
            raise JobError("job kind is empty")
        if max_attempts < 1:
            raise JobError(f"max_attempts must be >= 1, got {max_attempts}")
        row = JobRow(kind=kind, params_json=dumps(params or {}, "job params"), status="queued",
                     attempts=0, max_attempts=max_attempts, progress=0.0, metrics_json="{}",
                     created_at=time.time())  # fmt: skip
        with self._db.write() as session:
            session.add(row)
            session.flush()
            return row.id

    def claim_job(self, worker_id: str, kinds: Iterable[str] = ("rl",)) -> Job | None:
        """Atomically take the oldest queued job of one of ``kinds``; None when there is none."""
        if not worker_id:
            raise JobError("worker_id is empty")
        kinds = list(kinds)
        with self._db.write() as session:
            for _ in range(10):  # another PostgreSQL worker may win the guarded update
                job_id = session.execute(
                    select(JobRow.id).where(JobRow.status == "queued", JobRow.kind.in_(kinds))
                    .order_by(JobRow.id).limit(1).with_for_update(skip_locked=True)
                ).scalar()  # fmt: skip
                if job_id is None:
                    return None
                now = time.time()
                claimed = session.execute(
                    update(JobRow).where(JobRow.id == job_id, JobRow.status == "queued")
                    .values(status="running", worker_id=worker_id, attempts=JobRow.attempts + 1,
                            started_at=now, heartbeat_at=now, error=None)
                ).rowcount  # fmt: skip
                if claimed == 1:
                    session.expire_all()
                    return to_job(session.get(JobRow, job_id))
        return None

    def _running(self, session, job_id: int, worker_id: str | None) -> JobRow:
        row = session.get(JobRow, job_id)
        if row is None:
            raise JobError(f"job {job_id} does not exist")
        if row.status != "running":
            raise JobError(f"job {job_id} is {row.status}, not running")
        if worker_id is not None and row.worker_id != worker_id:
            raise JobError(f"job {job_id} belongs to worker {row.worker_id!r}, not {worker_id!r}")
        return row

    def heartbeat(self, job_id: int, worker_id: str) -> bool:
        """Say ``worker_id`` is alive on ``job_id``. False means the job is no longer this worker's
        (it was requeued or finished): the worker should stop working on it."""
        with self._db.write() as session:
            done = session.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.worker_id == worker_id,
                                     JobRow.status == "running")
                .values(heartbeat_at=time.time())
            ).rowcount  # fmt: skip
            return done == 1

    def update_job(
        self, job_id: int, *, progress: float, metrics: dict[str, Any] | None = None,
        message: str | None = None, worker_id: str | None = None,
    ) -> Job:  # fmt: skip
        """Report progress (0..1), merge ``metrics``, set a message; also counts as a heartbeat."""
        if not (isinstance(progress, (int, float)) and math.isfinite(progress) and 0 <= progress <= 1):
            raise JobError(f"progress must be a number in [0, 1], got {progress!r}")
        with self._db.write() as session:
            row = self._running(session, job_id, worker_id)
            merged = {**to_job(row).metrics, **(metrics or {})}
            row.metrics_json = dumps(merged, "job metrics")
            row.progress, row.heartbeat_at = float(progress), time.time()
            if message is not None:
                row.message = message
            session.flush()
            return to_job(row)

    def finish_job(self, job_id: int, result: dict[str, Any], *, worker_id: str | None = None) -> Job:
        """Mark a running job succeeded with a JSON ``result`` (e.g. the new model version)."""
        with self._db.write() as session:
            row = self._running(session, job_id, worker_id)
            row.result_json = dumps(result or {}, "job result")
            row.status, row.progress, row.finished_at = "succeeded", 1.0, time.time()
            session.flush()
            return to_job(row)

    def fail_job(self, job_id: int, error: str, *, worker_id: str | None = None) -> Job:
        """Mark a running job failed with a readable ``error``."""
        with self._db.write() as session:
            row = self._running(session, job_id, worker_id)
            row.status, row.error, row.finished_at = "failed", str(error), time.time()
            session.flush()
            return to_job(row)

    def requeue_stale_jobs(self, timeout_s: float) -> list[int]:
        """Running jobs whose worker has not heart-beaten for ``timeout_s`` go back to queued, or
        to failed once they used ``max_attempts`` claims. Returns the ids touched."""
        cutoff = time.time() - float(timeout_s)
        return self._requeue(JobRow.heartbeat_at < cutoff, lambda row: f"worker {row.worker_id!r} silent for "
                                                                    f"over {timeout_s:g}s")

    def release_jobs(self, worker_id: str) -> list[int]:
        """Running jobs of ``worker_id`` go back to queued (or to failed once they used
        ``max_attempts`` claims): a worker restarted under the same id calls it, since the jobs
        its previous process held can no longer be running. Returns the ids touched."""
        return self._requeue(JobRow.worker_id == worker_id, lambda row: f"worker {row.worker_id!r} restarted")

    def _requeue(self, condition, why) -> list[int]:
        touched = []
        with self._db.write() as session:
            rows = session.execute(
                select(JobRow).where(JobRow.status == "running", condition).with_for_update(skip_locked=True)
            ).scalars().all()  # fmt: skip
            for row in rows:
                note = why(row)
                if row.attempts < row.max_attempts:
                    row.status, row.worker_id = "queued", None
                    row.message = f"requeued: {note} (attempt {row.attempts}/{row.max_attempts})"
                else:
                    row.status, row.finished_at = "failed", time.time()
                    row.error = f"{note}; gave up after {row.attempts} attempts"
                touched.append(row.id)
        return touched

    def get_job(self, job_id: int) -> Job | None:
        """One job, None when the id is unknown."""
        with self._db.read() as session:
            row = session.get(JobRow, job_id)
            return to_job(row) if row is not None else None

    def list_jobs(self, status: str | None = None, kind: str | None = None) -> list[Job]:
        """Jobs, newest first, optionally filtered by status and kind."""
        stmt = select(JobRow).order_by(JobRow.id.desc())
        if status is not None:
            stmt = stmt.where(JobRow.status == status)
        if kind is not None:
            stmt = stmt.where(JobRow.kind == kind)
        with self._db.read() as session:
            return [to_job(r) for r in session.execute(stmt).scalars()]
