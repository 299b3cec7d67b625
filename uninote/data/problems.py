"""The error policy for reading corpora: fail on the first problem, or skip and count.

Every reader reports a problem through ``Problems.report(kind, message, path, line)``. With
``on_error="fail"`` that raises ``CorpusError`` naming the file and line. With ``"skip"`` the
problem is recorded, and ``Problems.warn_summary()`` emits ONE warning per source that counts
what was skipped by kind and shows the first few messages, so nothing is lost silently.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field

from uninote.errors import ConfigError, CorpusError

log = logging.getLogger("uninote.data")

ON_ERROR_CHOICES = ("fail", "skip")


class CorpusWarning(UserWarning):
    """Something in a corpus was skipped or degraded (e.g. loaded text-only)."""


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR_CHOICES:
        raise ConfigError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    return on_error


@dataclass
class Problems:
    """Collects problems found while reading one source; see the module docstring."""

    on_error: str = "fail"
    source: str = ""
    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def __post_init__(self):
        check_on_error(self.on_error)

    def report(self, kind: str, message: str, path=None, line: int | None = None) -> None:
        """Raise (fail mode) or record (skip mode) one problem of the given kind."""
        error = CorpusError(message, None if path is None else str(path), line)
        if self.on_error == "fail":
            raise error
        self.counts[kind] += 1
        if len(self.examples) < 5:
            self.examples.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()))
        shown = "; ".join(self.examples)
        more = " ..." if self.total > len(self.examples) else ""
        return f"{self.source}: skipped {self.total} problem(s) ({kinds}). First: {shown}{more}"

    def warn_summary(self) -> None:
        """One warning that counts everything skipped; nothing when there was nothing."""
        if self.total:
            text = self.summary()
            log.warning(text)
            warnings.warn(text, CorpusWarning, stacklevel=3)


def warn(text: str) -> None:
    """A degradation that is not an error (e.g. notes loaded without their photos)."""
    log.warning(text)
    warnings.warn(text, CorpusWarning, stacklevel=3)
