"""Ranking metrics over graded relevance (grades 0-3, as in TREC/BEIR qrels).

All functions take ``ranked`` (candidate ids, best first, the query itself already removed) and
``grades`` (the query's qrels: id -> grade; ids absent are grade 0).

- ``ndcg_at_k``: DCG = sum_i (2^g_i - 1) / log2(i + 2) over the top k, divided by the ideal DCG
  of the query's graded items. ``None`` when the query has no item with grade > 0.
- ``r_cap_at_k``: |top-grade items in the top k| / min(k, |top-grade items|), where top-grade
  items are those carrying the highest grade in the query's qrels (capped recall, as in
  MS MARCO-style R_cap). ``None`` when no item has grade > 0.
- ``mrr_at_k``: 1 / rank of the first item with grade >= ``min_grade`` in the top k (0 if none).
- ``ndcg_at_k_batch``: ``ndcg_at_k`` for a batch of sampled rankings of candidate pools, as torch
  tensors (what the RL reward computes on the GPU); the same numbers, tested against ``ndcg_at_k``.

Grades may be fractional (the RL reward model predicts expected grades); ``gain`` is the same
function of them everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def gain(grade):
    """Exponential gain ``2**grade - 1`` (0 for grade 0); a float, or elementwise on a tensor."""
    return 2.0 ** grade - 1.0


def dcg(gains: Sequence[float], k: int | None = None) -> float:
    """Discounted cumulative gain of the first ``k`` gains (all by default): ``sum_i gains[i] / log2(i + 2)``."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(list(gains)[:k]))


def ndcg_at_k(ranked: Sequence[str], grades: Mapping[str, float], k: int = 10) -> float | None:
    ideal = sorted((gain(g) for g in grades.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return None
    got = [gain(grades.get(c, 0)) for c in ranked[:k]]
    return dcg(got) / dcg(ideal)


def ndcg_at_k_batch(rankings, grades, valid, k: int = 10):
    """``ndcg_at_k`` of many sampled rankings of candidate pools at once (torch, any device).

    ``rankings`` (Q, G, k') int64 pool positions, best first (G rankings per query); ``grades``
    (Q, P) float grades of each query's pool; ``valid`` (Q, P) bool (False = padding, gain 0).
    Returns (Q, G) float32, NaN where a query has no positive grade (``None`` in ``ndcg_at_k``).
    """
    import torch  # only this function needs torch; the rest of uninote.eval runs on numpy

    gains = torch.where(valid, gain(grades.float()), torch.zeros_like(grades, dtype=torch.float32))
    depth = min(k, gains.shape[1])
    discount = 1.0 / torch.log2(torch.arange(depth, device=gains.device, dtype=torch.float32) + 2.0)
    picked = rankings[..., :depth]
    ranked = torch.gather(gains.unsqueeze(1).expand(-1, rankings.shape[1], -1), 2, picked)
    dcg_sampled = (ranked * discount[: picked.shape[-1]]).sum(-1)
    ideal = (gains.sort(dim=1, descending=True).values[:, :depth] * discount).sum(-1)
    out = dcg_sampled / ideal.clamp(min=1e-12).unsqueeze(1)
    return torch.where((ideal > 0).unsqueeze(1), out, torch.full_like(out, float("nan")))


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
