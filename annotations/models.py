"""SQLAlchemy 2.x schema of the annotation store. Bump ``SCHEMA_VERSION`` with a migration step.

Timestamps are Unix seconds (float, UTC): portable across SQLite and PostgreSQL and trivial to
difference for speed statistics. JSON payloads are stored as text we encode ourselves, so the
schema is the same on every backend.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 3


class Base(DeclarativeBase):
    pass


class SchemaInfo(Base):
    """Key/value facts about the database itself; ``schema_version`` is the one that matters."""

    __tablename__ = "schema_info"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class AnnotatorRow(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class NoteRow(Base):
    """Every note a grade may point at. Uploaded notes also keep their JSON (images by hash)."""

    __tablename__ = "notes"
    note_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    corpus: Mapped[str] = mapped_column(String(256), index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    uploaded: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    note_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class JudgmentRow(Base):
    """The current grade of one annotator for one (query, candidate) pair: at most one row."""

    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("annotator_id", "query_id", "candidate_id", name="uq_judgment_pair"),
        CheckConstraint("grade >= 0 AND grade <= 3", name="ck_grade_range"),
        CheckConstraint("query_id <> candidate_id", name="ck_not_self"),
        Index("ix_judgments_pair", "query_id", "candidate_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    query_id: Mapped[str] = mapped_column(ForeignKey("notes.note_id"))
    candidate_id: Mapped[str] = mapped_column(ForeignKey("notes.note_id"))
    grade: Mapped[int] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    dim: Mapped[int | None] = mapped_column(Integer, nullable=True)
    granularity: Mapped[str | None] = mapped_column(String(32), nullable=True)
    strategy: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)  # added in schema v2
    task_id: Mapped[int | None] = mapped_column(ForeignKey("label_tasks.id"), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    revision: Mapped[int] = mapped_column(Integer, default=1)


class JudgmentHistoryRow(Base):
    """Append-only log of every grade action (create, update, undo). Never deleted (schema v2).

    ``before_json`` / ``after_json`` hold the judgment state around the action (null = no row).
    """

    __tablename__ = "judgment_history"
    __table_args__ = (Index("ix_history_annotator", "annotator_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    query_id: Mapped[str] = mapped_column(String(256))
    candidate_id: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(16))  # create | update | undo | migrated
    before_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    after_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    undone: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[float] = mapped_column(Float)


class AdjudicationRow(Base):
    """A reviewer's final grade for a pair whose annotators disagree (schema v3): at most one per
    pair; the RL export and ``rl_data`` use it instead of the annotators' grades."""

    __tablename__ = "adjudications"
    __table_args__ = (
        UniqueConstraint("query_id", "candidate_id", name="uq_adjudication_pair"),
        CheckConstraint("grade >= 0 AND grade <= 3", name="ck_adjudication_range"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    query_id: Mapped[str] = mapped_column(ForeignKey("notes.note_id"))
    candidate_id: Mapped[str] = mapped_column(ForeignKey("notes.note_id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    grade: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    grades_json: Mapped[str] = mapped_column(Text, default="{}")  # annotators' grades when decided
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class LabelTaskRow(Base):
    """A pair queued for grading, with where it came from (``source``) and how many grades it needs."""

    __tablename__ = "label_tasks"
    __table_args__ = (UniqueConstraint("query_id", "candidate_id", name="uq_task_pair"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    query_id: Mapped[str] = mapped_column(ForeignKey("notes.note_id"))
    candidate_id: Mapped[str] = mapped_column(ForeignKey("notes.note_id"))
    source: Mapped[str] = mapped_column(String(32), index=True)
    priority: Mapped[float] = mapped_column(Float, index=True)
    required_annotations: Mapped[int] = mapped_column(Integer, default=1)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    dim: Mapped[int | None] = mapped_column(Integer, nullable=True)
    granularity: Mapped[str | None] = mapped_column(String(32), nullable=True)
    strategy: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class TaskAssignmentRow(Base):
    """Who holds or finished which task. ``status``: leased | done | skipped."""

    __tablename__ = "task_assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "annotator_id", name="uq_assignment"),
        Index("ix_assignment_status", "status", "lease_expires_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("label_tasks.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    leased_at: Mapped[float] = mapped_column(Float)
    lease_expires_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    parent: Mapped[str | None] = mapped_column(String(128), nullable=True)
    corpus: Mapped[str | None] = mapped_column(String(256), nullable=True)
    metrics_json: Mapped[str] = mapped_column(Text, default="{}")
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_kind", "status", "kind", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    params_json: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(16))
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    metrics_json: Mapped[str] = mapped_column(Text, default="{}")
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
