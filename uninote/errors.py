"""Errors a user can act on. The CLI prints them as one line (no traceback) and exits with 2."""


class UniNoteError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class ConfigError(UniNoteError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class CorpusError(UniNoteError, ValueError):
    """A corpus file is malformed. Names the file and, where known, the line."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path, self.line = path, line


class ImageError(UniNoteError, ValueError):
    """An image is missing, unreadable, truncated, too large, or of a format we do not accept."""


class ModelMismatchError(UniNoteError, ValueError):
    """An index or embedding file was built by another model version than the one in use."""
