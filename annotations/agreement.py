"""Agreement and annotator-quality statistics. Pure functions over plain values or ``Judgment``s.

- Cohen's weighted kappa (two raters, same items): ``1 - sum(w*O) / sum(w*E)`` with O the observed
  joint distribution, E the product of the marginals, and disagreement weights
  ``w_ij = |i-j| / (K-1)`` (linear) or ``((i-j) / (K-1))**2`` (quadratic) (Cohen 1968).
- Krippendorff's alpha (any number of raters, missing values allowed):
  ``alpha = 1 - D_o / D_e`` from the coincidence matrix, with the ordinal, interval or nominal
  distance (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability").
- Speed: median seconds between an annotator's consecutive grades, breaks left out.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from itertools import combinations
from typing import Any, Iterable, Sequence

GRADE_VALUES = (0, 1, 2, 3)


def median_interval(times: Sequence[float], max_gap_s: float | None = None) -> float | None:
    """Median of the gaps between consecutive sorted timestamps, leaving out gaps over
    ``max_gap_s`` (breaks); None when no gap is left."""
    ts = sorted(times)
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    if max_gap_s is not None:
        gaps = [g for g in gaps if g <= max_gap_s]
    return statistics.median(gaps) if gaps else None


def weighted_kappa(
    a: Sequence[int], b: Sequence[int], weights: str = "quadratic",
    categories: Sequence[int] = GRADE_VALUES,
) -> float | None:  # fmt: skip
    """Cohen's weighted kappa of two raters' grades on the same items (``weights``: "linear" or
    "quadratic"). None when undefined (no items, or no expected disagreement)."""
    if len(a) != len(b):
        raise ValueError(f"weighted_kappa: {len(a)} grades vs {len(b)}; rate the same items")
    if weights not in ("linear", "quadratic"):
        raise ValueError(f"weights must be 'linear' or 'quadratic', got {weights!r}")
    if not a:
        return None
    cats = list(categories)
    index = {c: i for i, c in enumerate(cats)}
    k, n = len(cats), len(a)
    span = max(k - 1, 1)
    power = 1 if weights == "linear" else 2
    observed = [[0.0] * k for _ in range(k)]
    for x, y in zip(a, b):
        observed[index[x]][index[y]] += 1 / n
    row = [sum(r) for r in observed]
    col = [sum(observed[i][j] for i in range(k)) for j in range(k)]
    w_obs = w_exp = 0.0
    for i in range(k):
        for j in range(k):
            w = (abs(i - j) / span) ** power
            w_obs += w * observed[i][j]
            w_exp += w * row[i] * col[j]
    return None if w_exp == 0 else 1.0 - w_obs / w_exp


def _delta2(level: str, values: list, n_c: dict) -> dict:
    if level == "nominal":
        return {(c, k): float(c != k) for c in values for k in values}
    if level == "interval":
        return {(c, k): float(c - k) ** 2 for c in values for k in values}
    if level == "ordinal":
        out = {}
        for i, c in enumerate(values):
            for j, k in enumerate(values):
                lo, hi = min(i, j), max(i, j)
                between = sum(n_c[values[g]] for g in range(lo, hi + 1))
                out[(c, k)] = (between - (n_c[c] + n_c[k]) / 2) ** 2
        return out
    raise ValueError(f"level must be 'nominal', 'ordinal' or 'interval', got {level!r}")


def krippendorff_alpha(units: Iterable[Sequence[Any]], level: str = "ordinal") -> float | None:
    """Krippendorff's alpha. ``units``: for each item, the values it received (missing values
    simply left out). Units with fewer than two values do not count. None when undefined."""
    coincidence: dict[tuple, float] = defaultdict(float)
    for unit in units:
        vals = [v for v in unit if v is not None]
        m = len(vals)
        if m < 2:
            continue
        for i, j in combinations(range(m), 2):
            coincidence[(vals[i], vals[j])] += 1 / (m - 1)
            coincidence[(vals[j], vals[i])] += 1 / (m - 1)
    n_c: dict[Any, float] = defaultdict(float)
    for (c, _), v in coincidence.items():
        n_c[c] += v
    n = sum(n_c.values())
    if n <= 1:
        return None
    values = sorted(n_c)
    d2 = _delta2(level, values, n_c)
    d_obs = sum(v * d2[key] for key, v in coincidence.items()) / n
    d_exp = sum(n_c[c] * n_c[k] * d2[(c, k)] for c in values for k in values) / (n * (n - 1))
    return None if d_exp == 0 else 1.0 - d_obs / d_exp


def _pair_grades(judgments: Iterable[Any]) -> dict[tuple[str, str], dict[str, int]]:
    """(query, candidate) -> {annotator: grade}."""
    out: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for j in judgments:
        out[(j.query_id, j.candidate_id)][j.annotator] = j.grade
    return out


def pairwise_agreement(judgments: Iterable[Any], min_overlap: int = 1) -> list[dict[str, Any]]:
    """For each two annotators with at least ``min_overlap`` pairs in common: the number of
    shared pairs, exact agreement rate and weighted kappa (linear and quadratic)."""
    by_pair = _pair_grades(judgments)
    shared: dict[tuple[str, str], tuple[list, list]] = defaultdict(lambda: ([], []))
    for grades in by_pair.values():
        for x, y in combinations(sorted(grades), 2):
            shared[(x, y)][0].append(grades[x])
            shared[(x, y)][1].append(grades[y])
    rows = []
    for (x, y), (ga, gb) in sorted(shared.items()):
        if len(ga) < min_overlap:
            continue
        rows.append(dict(
            annotator_a=x, annotator_b=y, n=len(ga),
            exact=sum(p == q for p, q in zip(ga, gb)) / len(ga),
            kappa_linear=weighted_kappa(ga, gb, "linear"),
            kappa_quadratic=weighted_kappa(ga, gb, "quadratic"),
        ))  # fmt: skip
    return rows


def overall_alpha(judgments: Iterable[Any], level: str = "ordinal") -> dict[str, Any]:
    """Krippendorff's alpha over every pair graded by 2+ annotators, with the unit count."""
    units = [list(g.values()) for g in _pair_grades(judgments).values() if len(g) >= 2]
    return {"alpha": krippendorff_alpha(units, level), "level": level, "units": len(units)}


def annotator_summary(judgments: Iterable[Any], max_gap_s: float = 600.0) -> list[dict[str, Any]]:
    """Per annotator: grade count, grade distribution (0-3), mean grade and median seconds
    between consecutive grades (gaps over ``max_gap_s`` are breaks)."""
    grades: dict[str, list[int]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    for j in judgments:
        grades[j.annotator].append(j.grade)
        times[j.annotator].append(j.created_at)
    rows = []
    for name in sorted(grades):
        counts = Counter(grades[name])
        rows.append(dict(
            annotator=name, n=len(grades[name]),
            **{f"grade_{g}": counts.get(g, 0) for g in GRADE_VALUES},
            mean_grade=statistics.fmean(grades[name]),
            median_seconds=median_interval(times[name], max_gap_s),
        ))  # fmt: skip
    return rows


def agreement_report(judgments: Iterable[Any], level: str = "ordinal") -> dict[str, Any]:
    """Krippendorff's alpha, each two annotators' quadratic kappa, and, for a figure that cannot be
    computed yet, the reason in words (``alpha_reason``, ``kappa_reason``; None when shown).

    Alpha needs pairs graded by two or more annotators; kappa needs two annotators with shared
    pairs; both are undefined while every shared pair got one and the same grade."""
    judgments = list(judgments)
    units = [list(g.values()) for g in _pair_grades(judgments).values() if len(g) >= 2]
    alpha = krippendorff_alpha(units, level) if units else None
    rows = pairwise_agreement(judgments)
    kappas = [r for r in rows if r["kappa_quadratic"] is not None]
    n_annotators = len({j.annotator for j in judgments})
    if not units:
        alpha_reason = f"needs pairs graded by two annotators: 0 so far ({len(judgments)} grades by " \
                       f"{n_annotators} annotator{'s' if n_annotators != 1 else ''})"
    elif alpha is None:
        alpha_reason = f"undefined while all {len(units)} pairs graded by two annotators got one grade"
    else:
        alpha_reason = None
    if n_annotators < 2:
        kappa_reason = f"needs two annotators: {n_annotators} so far"
    elif not rows:
        kappa_reason = "needs pairs graded by two annotators: 0 so far"
    elif not kappas:
        kappa_reason = f"undefined while the {sum(r['n'] for r in rows)} shared pairs leave no expected disagreement"
    else:
        kappa_reason = None
    return {"alpha": alpha, "level": level, "units": len(units), "alpha_reason": alpha_reason,
            "pairwise": rows, "kappa_reason": kappa_reason}


def disagreements(judgments: Iterable[Any], adjudicated: dict[tuple[str, str], int] | None = None,
                  min_spread: int = 2) -> list[dict[str, Any]]:
    """Pairs whose annotators' grades differ by at least ``min_spread``, widest spread first: query,
    candidate, {annotator: grade}, spread, and the reviewer's grade when adjudicated (else None)."""
    adjudicated = adjudicated or {}
    rows = []
    for (q, c), grades in _pair_grades(judgments).items():
        spread = max(grades.values()) - min(grades.values())
        if len(grades) >= 2 and spread >= min_spread:
            rows.append(dict(query_id=q, candidate_id=c, grades=dict(sorted(grades.items())),
                             spread=spread, adjudicated=adjudicated.get((q, c))))  # fmt: skip
    return sorted(rows, key=lambda r: (-r["spread"], r["query_id"], r["candidate_id"]))
