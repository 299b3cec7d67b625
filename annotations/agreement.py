"""Agreement and annotator-quality statistics: pure functions (filled in below)."""

from __future__ import annotations

import statistics


def median_interval(times: list[float], max_gap_s: float | None = None) -> float | None:
    """Median of the gaps between consecutive sorted timestamps, leaving out gaps over
    ``max_gap_s`` (breaks); None with fewer than two usable gaps' worth of data."""
    ts = sorted(times)
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    if max_gap_s is not None:
        gaps = [g for g in gaps if g <= max_gap_s]
    return statistics.median(gaps) if gaps else None
