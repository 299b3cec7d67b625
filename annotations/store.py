"""``AnnotationStore``: graded relevance pairs, notes, model versions and training jobs in one DB.

Public API (all methods return plain frozen dataclasses from ``annotations.types``; no ORM object
or session ever leaves the store)::

    store = AnnotationStore()                      # $UNINOTE_DB, /data/uninote/..., or ~/.cache
    store = AnnotationStore("postgresql+psycopg://user:pw@host/uninote")   # same code
    store.url, store.images_dir, store.close()

    # notes                                    (notes.py)
    store.register_notes("fashion", corpus.notes) -> {"added", "updated", "unchanged"}
    store.add_uploaded_note(note, [jpeg_bytes]) -> Note      # photos content-addressed
    store.uploaded_notes() -> list[Note]; store.has_note(id); store.note_ids(corpus)
    # grades                                   (grades.py)
    store.ensure_annotator("ana")
    store.submit_grade("ana", q, c, 2, model_version=..., dim=64, granularity="note",
                       strategy="exact", rank=3, comment=None, task_id=None) -> Judgment
    store.undo("ana") -> Judgment | None; store.judgments(annotator=..., query_id=...)
    store.annotator_stats("ana") -> AnnotatorStats; store.annotators()
    store.judgments(annotator="ana")            # a review of one's own grades; submit again to change
    # review                                   (review.py)
    store.adjudicate("rita", q, c, 2, comment=None) -> Adjudication   # the export prefers it
    store.adjudications(); store.adjudicated_grades() -> {(q, c): grade}
    # model versions and training jobs         (jobs.py)
    store.register_model_version(v, path, parent=None, corpus=None, metrics=None)
    store.list_model_versions(); store.set_active_version(v); store.active_version()
    job_id = store.enqueue_job("rl", {...}); job = store.claim_job("worker-1", kinds=("rl",))
    store.heartbeat(id, "worker-1"); store.update_job(id, progress=.5, metrics={...})
    store.finish_job(id, {...}); store.fail_job(id, "why"); store.requeue_stale_jobs(300)
    store.release_jobs(worker_id)   # a restarted worker: its earlier process's jobs back to the queue
    store.get_job(id); store.list_jobs(status="running")
    # operations
    store.backup("/path/copy.db"); store.check() -> dict; store.counts() -> dict

Every write goes through one serialised path (``annotations.db.Database.write``); see
``annotations/db.py`` for the SQLite settings that make it crash- and concurrency-safe.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from annotations.backup import backup_database, integrity_check
from annotations.db import Database, normalize_url, redact_url
from annotations.grades import GradesMixin
from annotations.jobs import JobsMixin
from annotations.migrations import ensure_schema, read_version
from annotations.models import Base
from annotations.notes import NotesMixin
from annotations.review import ReviewMixin

DEFAULT_LEASE_S = 600.0


class AnnotationStore(GradesMixin, ReviewMixin, NotesMixin, JobsMixin):
    """The annotation database. Thread-safe; share one instance per process.

    Args:
        url: SQLAlchemy URL (``sqlite:////abs/path.db``, ``postgresql+psycopg://...``) or a file
            path; None means ``annotations.db.default_url()``.
        migrate: migrate an older schema (after a backup) instead of refusing to open it.
        images_dir: where uploaded photos go; default ``<db folder>/images`` for SQLite files,
            ``$UNINOTE_CACHE/images`` otherwise.
        lease_s: how long a queue task stays reserved for the annotator it was handed to.
    """

    def __init__(
        self, url: str | None = None, *, migrate: bool = True, images_dir: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ):  # fmt: skip
        self._db = Database(normalize_url(url))
        self.lease_s = float(lease_s)
        self.settings = self._db.check_settings()
        self.migration = ensure_schema(self._db, migrate=migrate)
        if images_dir is None:
            images_dir = self._default_images_dir()
        self.images_dir = Path(images_dir)
        self.images_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, **kwargs) -> "AnnotationStore":
        """The store at the default location (``$UNINOTE_DB`` first)."""
        return cls(None, **kwargs)

    def _default_images_dir(self) -> Path:
        if self._db.path is not None:
            return self._db.path.parent / "images"
        import os

        cache = os.environ.get("UNINOTE_CACHE", str(Path.home() / ".cache" / "uninote"))
        return Path(cache) / "images"

    @property
    def url(self) -> str:
        """The database URL (contains any password: log ``redacted_url`` instead)."""
        return self._db.url

    @property
    def redacted_url(self) -> str:
        return redact_url(self._db.url)

    @property
    def database(self) -> Database:
        """The engine and write path, for the queue and export modules of this package."""
        return self._db

    def close(self) -> None:
        """Release all connections. The store must not be used afterwards."""
        self._db.dispose()

    def __enter__(self) -> "AnnotationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- operations ---------------------------------------------------------------------
    def backup(self, dest: str | Path) -> Path:
        """Consistent online copy (``VACUUM INTO``) checked with ``integrity_check``."""
        return backup_database(self._db, dest)

    def check(self) -> dict[str, object]:
        """Schema version, SQLite settings and ``integrity_check`` result (SQLite files)."""
        with self._db.read() as session:
            version = read_version(session.connection())
        report: dict[str, object] = {"url": self.redacted_url, "schema_version": version,
                                     **{str(k): v for k, v in self.settings.items()}}  # fmt: skip
        if self._db.path is not None:
            report["integrity_check"] = integrity_check(self._db.path)
        return report

    def counts(self) -> dict[str, int]:
        """Row count of every table."""
        with self._db.read() as session:
            return {
                name: session.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in Base.metadata.tables.items()
            }
