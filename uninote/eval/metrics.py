"""Ranking metrics over graded relevance (grades 0-3, as in TREC/BEIR qrels).

All functions take ``ranked`` (candidate ids, best first, the query itself already removed) and
``grades`` (the query's qrels: id -> grade; ids absent are grade 0).

- ``ndcg_at_k``: DCG = sum_i (2^g_i - 1) / log2(i + 2) over the top k, divided by the ideal DCG
  of the query's graded items. ``None`` when the query has no item with grade > 0.
- ``r_cap_at_k``: |top-grade items in the top k| / min(k, |top-grade items|), where top-grade
  items are those carrying the highest grade in the query's qrels (capped recall, as in
  MS MARCO-style R_cap). ``None`` when no item has grade > 0.
- ``mrr_at_k``: 1 / rank of the first item with grade >= ``min_grade`` in the top k (0 if none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def _gain(grade: int) -> float:
    return float(2**grade - 1)


def dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def ndcg_at_k(ranked: Sequence[str], grades: Mapping[str, int], k: int = 10) -> float | None:
    ideal = sorted((_gain(g) for g in grades.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return None
    got = [_gain(grades.get(c, 0)) for c in ranked[:k]]
    return dcg(got) / dcg(ideal)


def r_cap_at_k(ranked: Sequence[str], grades: Mapping[str, int], k: int = 10) -> float | None:
    best = max(grades.values(), default=0)
    if best <= 0:
        return None
    top = {c for c, g in grades.items() if g == best}
    hit = sum(1 for c in ranked[:k] if c in top)
    return hit / min(k, len(top))


def mrr_at_k(ranked: Sequence[str], grades: Mapping[str, int], k: int = 10,
             min_grade: int = 1) -> float:
    for i, c in enumerate(ranked[:k]):
        if grades.get(c, 0) >= min_grade:
            return 1.0 / (i + 1)
    return 0.0
