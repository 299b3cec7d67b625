"""Plain, frozen records returned by the store: callers never see an ORM object or a session.

Timestamps are Unix seconds (UTC, float) everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GRADES = (0, 1, 2, 3)
GRADE_LABELS = {0: "irrelevant", 1: "related", 2: "relevant", 3: "near-duplicate / ideal"}
JOB_STATUSES = ("queued", "running", "succeeded", "failed")


@dataclass(frozen=True)
class Judgment:
    """One annotator's current grade for (query, candidate), with the context it was shown in."""

    id: int
    annotator: str
    query_id: str
    candidate_id: str
    grade: int
    model_version: str | None = None
    dim: int | None = None
    granularity: str | None = None
    strategy: str | None = None
    rank: int | None = None
    comment: str | None = None
    task_id: int | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    revision: int = 1


@dataclass(frozen=True)
class Adjudication:
    """A reviewer's final grade for a (query, candidate) pair; the RL export prefers it over the
    annotators' grades. ``grades``: the annotators' grades when the reviewer decided."""

    query_id: str
    candidate_id: str
    reviewer: str
    grade: int
    comment: str | None = None
    grades: dict[str, int] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class AnnotatorStats:
    """What one annotator has done: counts, grade distribution, speed."""

    annotator: str
    n_grades: int
    grade_counts: dict[int, int]
    median_seconds: float | None
    first_at: float | None
    last_at: float | None
    n_skipped: int = 0


@dataclass(frozen=True)
class ModelVersion:
    """A checkpoint the app can serve and the RL stage can start from."""

    version: str
    path: str
    parent: str | None = None
    corpus: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    active: bool = False


@dataclass(frozen=True)
class Job:
    """A training job; ``status`` is one of queued, running, succeeded, failed."""

    id: int
    kind: str
    params: dict[str, Any]
    status: str
    worker_id: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    progress: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    heartbeat_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class Task:
    """A pair leased to one annotator: grade it with ``LabelQueue.submit`` (or ``submit_grade``
    with ``task_id=task.id`` and the context fields below)."""

    id: int
    query_id: str
    candidate_id: str
    source: str
    priority: float
    required_annotations: int
    model_version: str | None = None
    dim: int | None = None
    granularity: str | None = None
    strategy: str | None = None
    rank: int | None = None
    annotator: str | None = None
    lease_expires_at: float | None = None
