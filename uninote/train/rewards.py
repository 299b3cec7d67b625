"""Rewards for RL: plain functions ``(query, rankings, grades, ...) -> list[float | None]``.

A *ranking* is what the policy produced for one query: candidate note ids, best first (a sample
from the Plackett-Luce distribution, see ``uninote.train.plackett_luce``). *Grades* map candidate
ids to graded relevance (0-3 from people, or a float predicted by the reward model). A reward is
``None`` when it is undefined (the query has no relevant candidate at all): such groups carry no
signal and the trainer skips them, like TRL's reward functions returning ``None``.

Gains follow the usual exponential NDCG convention, ``gain(g) = 2**g - 1``, and the ideal DCG is
computed over every graded candidate in the pool (the best ranking the policy could have chosen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def gain(grade: float) -> float:
    """Exponential gain ``2**grade - 1`` (0 for grade 0)."""
    return 2.0 ** float(grade) - 1.0


def dcg(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` gains: ``sum_i gains[i] / log2(i + 2)``."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(list(gains)[:k]))


def ndcg_at_k(ranking: Sequence[str], grades: Mapping[str, float], k: int) -> float | None:
    """NDCG@k of ``ranking`` under ``grades`` (ungraded ids count 0); None if no positive grade."""
    ideal = dcg(sorted((gain(g) for g in grades.values()), reverse=True), k)
    if ideal <= 0.0:
        return None
    return dcg([gain(grades.get(c, 0.0)) for c in ranking], k) / ideal


def ndcg_reward(query: str, rankings: Sequence[Sequence[str]], grades: Mapping[str, float],
                k: int = 10) -> list[float | None]:
    """One NDCG@k reward per sampled ranking of ``query``'s candidates.

    >>> ndcg_reward("q", [["a", "b"], ["b", "a"]], {"a": 3, "b": 0}, k=2)
    [1.0, 0.6309297535714575]
    """
    del query  # part of the reward-function signature; NDCG depends on the grades only
    return [ndcg_at_k(r, grades, k) for r in rankings]


def top1_grade_reward(query: str, rankings: Sequence[Sequence[str]], grades: Mapping[str, float],
                      k: int = 1) -> list[float | None]:
    """The grade (0-3 scale) of the candidate put first: a cruder reward, useful as a baseline."""
    del query, k
    if not grades:
        return [None] * len(rankings)
    return [float(grades.get(r[0], 0.0)) if len(r) else None for r in rankings]


REWARD_FUNCTIONS = {"ndcg": ndcg_reward, "top1_grade": top1_grade_reward}


def merge_grades(human: Mapping[str, float], predicted: Mapping[str, float] | None) -> dict[str, float]:
    """Grades for a candidate pool: reward-model predictions, overridden by every human grade."""
    merged = dict(predicted or {})
    merged.update({c: float(g) for c, g in human.items()})
    return merged


def ndcg_reward_batch(rankings, grades, valid, k: int = 10):
    """Vectorised ``ndcg_reward`` for a batch (same numbers, no Python loop; runs on the GPU).

    ``rankings`` (Q, G, k') pool positions, ``grades`` (Q, P) float, ``valid`` (Q, P) bool.
    Returns rewards (Q, G) with NaN where a query has no positive grade (``None`` above).
    """
    import torch

    gains = torch.where(valid, torch.pow(2.0, grades.float()) - 1.0, torch.zeros_like(grades, dtype=torch.float32))
    depth = min(k, gains.shape[1])
    discount = 1.0 / torch.log2(torch.arange(depth, device=gains.device, dtype=torch.float32) + 2.0)
    picked = rankings[..., :depth]
    ranked = torch.gather(gains.unsqueeze(1).expand(-1, rankings.shape[1], -1), 2, picked)
    dcg_sampled = (ranked * discount[: picked.shape[-1]]).sum(-1)
    ideal = (gains.sort(dim=1, descending=True).values[:, :depth] * discount).sum(-1)
    out = dcg_sampled / ideal.clamp(min=1e-12).unsqueeze(1)
    return torch.where((ideal > 0).unsqueeze(1), out, torch.full_like(out, float("nan")))
