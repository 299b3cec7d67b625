"""How far the service's start is: which step of how many, and the live progress bar's percent and ETA.

The long steps of a first run (SFT, feature extraction, embedding) report through tqdm, in the
console. ``BuildSteps`` names the steps the service goes through; ``live_bar`` reads the newest
running tqdm bar of this process, so the page can show the same percent and time left without the
training code knowing about the app.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class BarState:
    """One running tqdm bar: what it counts, how far it is, and its time left (None: unknown)."""

    desc: str
    fraction: float
    eta_s: float | None


def live_bar() -> BarState | None:
    """The newest enabled tqdm bar with a known total, or None when none is running."""
    from tqdm.std import tqdm

    with tqdm.get_lock():
        bars = [b for b in list(tqdm._instances) if not getattr(b, "disable", True) and b.total]
    if not bars:
        return None
    bar = max(bars, key=lambda b: b.start_t)
    n, total = float(bar.n), float(bar.total)
    elapsed = time.time() - bar.start_t
    rate = n / elapsed if n > 0 and elapsed > 0 else None
    eta = (total - n) / rate if rate else None
    return BarState(str(bar.desc or "working"), min(n / total, 1.0), eta)


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class BuildProgress:
    """Where the start is: step ``step`` of ``steps`` (1-based), and the live bar inside it."""

    step: int
    steps: int
    label: str
    first_run: bool
    bar: BarState | None = None

    def describe(self) -> str:
        """'step 2 of 5, training the default SFT model: sft 45%, about 3 min left'."""
        text = f"step {self.step} of {self.steps}, {self.label}"
        if self.bar is not None:
            text += f": {self.bar.desc} {self.bar.fraction:.0%}"
            if self.bar.eta_s is not None:
                text += f", about {format_seconds(self.bar.eta_s)} left"
        return text


@dataclass(frozen=True)
class CompletionProgress:
    """Adding the rest of a big corpus to a version built on part of it (uninote/service/completion.py)."""

    done: int
    total: int
    eta_s: float | None
    error: str | None = None

    def describe(self) -> str:
        """'6,500 of 44,424 notes searchable, adding the rest in the background: 15%, about 40 min left'."""
        text = f"{self.done:,} of {self.total:,} notes searchable"
        if self.error:
            return f"{text}; adding the rest stopped ({self.error}), the next start resumes it"
        text += f", adding the rest in the background: {self.done / max(self.total, 1):.0%}"
        if self.eta_s is not None:
            text += f", about {format_seconds(self.eta_s)} left"
        return text


class BuildSteps:
    """The named steps of a start; ``begin`` moves to the next one (thread-safe to read)."""

    def __init__(self, labels: list[str], first_run: bool = False):
        self._lock = threading.Lock()
        self._labels, self.first_run, self._index = list(labels), first_run, 0

    def plan(self, labels: list[str], first_run: bool) -> None:
        """Replace the steps still to come (the ones done keep their numbers)."""
        with self._lock:
            self._labels = self._labels[: self._index] + list(labels)
            self.first_run = first_run

    def begin(self, label: str) -> None:
        """Start the next step, named ``label`` (which replaces the planned name)."""
        with self._lock:
            self._index += 1
            if self._index > len(self._labels):
                self._labels.append(label)
            self._labels[self._index - 1] = label

    def now(self) -> BuildProgress:
        with self._lock:
            step = max(self._index, 1)
            label = self._labels[step - 1] if self._labels else "starting"
            return BuildProgress(step, max(len(self._labels), step), label, self.first_run, live_bar())
