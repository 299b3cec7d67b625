"""The annotation store: graded note pairs, label queue, agreement, export as RL reward data."""

from annotations.errors import AnnotationError, InvalidGrade, JobError, SchemaError, UnknownNote
from annotations.store import AnnotationStore
from annotations.types import AnnotatorStats, Job, Judgment, ModelVersion, Task

__all__ = [
    "AnnotationStore", "AnnotationError", "InvalidGrade", "UnknownNote", "SchemaError",
    "JobError", "Judgment", "Job", "ModelVersion", "Task", "AnnotatorStats",
]  # fmt: skip
