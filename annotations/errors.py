"""Errors the annotation store raises for input a caller can fix. All are ``UniNoteError``s."""

from __future__ import annotations

from uninote.errors import UniNoteError


class AnnotationError(UniNoteError, ValueError):
    """Base class: the request was refused and nothing in the store changed."""


class InvalidGrade(AnnotationError):
    """A grade was refused: out of 0-3, unknown note, empty annotator, or a note against itself."""


class UnknownNote(InvalidGrade):
    """A note id that was never registered with the store."""


class TooSoon(InvalidGrade):
    """A grade that arrived too soon after the pair was shown or graded: a double key press."""


class SchemaError(AnnotationError):
    """The database was written by another schema version and cannot be opened as it is."""


class JobError(AnnotationError):
    """A training job operation was refused (unknown job, wrong worker, wrong status)."""
