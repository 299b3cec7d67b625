"""Row -> frozen record conversions and small JSON helpers shared by the store modules."""

from __future__ import annotations

import json
from typing import Any

from annotations.errors import AnnotationError
from annotations.models import JobRow, JudgmentRow, ModelVersionRow
from annotations.types import Job, Judgment, ModelVersion

JUDGMENT_FIELDS = (
    "grade", "model_version", "dim", "granularity", "strategy", "rank", "comment", "task_id",
    "created_at", "updated_at", "revision",
)  # fmt: skip


def dumps(obj: Any, what: str) -> str:
    """JSON text of ``obj``; a clear error naming ``what`` when it is not JSON-serialisable."""
    try:
        return json.dumps(obj, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"{what} must be JSON-serialisable (plain dict/list/str/number): {exc}")


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def judgment_state(row: JudgmentRow) -> dict[str, Any]:
    """The mutable state of a judgment row, as stored in the history log."""
    return {f: getattr(row, f) for f in JUDGMENT_FIELDS}


def to_judgment(row: JudgmentRow, annotator: str) -> Judgment:
    return Judgment(
        id=row.id, annotator=annotator, query_id=row.query_id, candidate_id=row.candidate_id,
        **judgment_state(row),
    )  # fmt: skip


def to_model_version(row: ModelVersionRow) -> ModelVersion:
    return ModelVersion(
        version=row.version, path=row.path, parent=row.parent, corpus=row.corpus,
        metrics=loads(row.metrics_json, {}), created_at=row.created_at, active=bool(row.active),
    )  # fmt: skip


def to_job(row: JobRow) -> Job:
    return Job(
        id=row.id, kind=row.kind, params=loads(row.params_json, {}), status=row.status,
        worker_id=row.worker_id, attempts=row.attempts, max_attempts=row.max_attempts,
        progress=row.progress, metrics=loads(row.metrics_json, {}), message=row.message,
        result=loads(row.result_json), error=row.error, created_at=row.created_at,
        started_at=row.started_at, heartbeat_at=row.heartbeat_at, finished_at=row.finished_at,
    )  # fmt: skip
