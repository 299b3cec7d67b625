"""Rewards for RL: plain functions ``(query, rankings, grades, ...) -> list[float | None]``.

A *ranking* is what the policy produced for one query: candidate note ids, best first (a sample
from the Plackett-Luce distribution, see ``uninote.train.plackett_luce``). *Grades* map candidate
ids to graded relevance (0-3 from people, or a float predicted by the reward model). A reward is
``None`` when it is undefined (the query has no relevant candidate at all): such groups carry no
signal and the trainer skips them, like TRL's reward functions returning ``None``.

NDCG is the evaluation's own (``uninote.eval.metrics``): exponential gains ``2**g - 1``, the ideal
DCG over every graded candidate in the pool (the best ranking the policy could have chosen).

``REWARD_FUNCTIONS`` is the registry ``RLConfig.reward`` names; ``batch_rewards`` is how the RL
trainer scores sampled rankings with any of them, using the vectorised form a reward registers in
``BATCHED_REWARDS`` (same numbers, tested) and the plain function otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from uninote.eval.metrics import ndcg_at_k, ndcg_at_k_batch
from uninote.train.advantages import rewards_to_tensor


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
BATCHED_REWARDS = {"ndcg": ndcg_at_k_batch}  # (rankings, grades, valid, k) -> (Q, G) tensor, NaN = None


def batch_rewards(name: str, rankings: torch.Tensor, grades: torch.Tensor, valid: torch.Tensor,
                  k: int) -> torch.Tensor:
    """Rewards (Q, G) of the registered reward ``name`` for G sampled rankings per query.

    ``rankings`` (Q, G, k') pool positions, ``grades`` (Q, P) float, ``valid`` (Q, P) bool; NaN
    where the reward is undefined (``None``). On ``rankings``' device when the reward has a
    vectorised form, else on the CPU (one call of the plain function per query, the query named by
    its row and candidates by their pool positions).
    """
    if name not in REWARD_FUNCTIONS:
        raise ValueError(f"unknown reward {name!r}; expected one of {sorted(REWARD_FUNCTIONS)}")
    if name in BATCHED_REWARDS:
        return BATCHED_REWARDS[name](rankings, grades.to(rankings.device), valid.to(rankings.device), k)
    rankings, out = rankings.cpu(), []
    for i in range(rankings.shape[0]):
        pool_grades = {j: float(grades[i, j]) for j in torch.nonzero(valid[i]).flatten().tolist()}
        out.append(REWARD_FUNCTIONS[name](str(i), rankings[i].tolist(), pool_grades, k=k))
    return rewards_to_tensor(out)


def merge_grades(human: Mapping[str, float], predicted: Mapping[str, float] | None) -> dict[str, float]:
    """Grades for a candidate pool: reward-model predictions, overridden by every human grade."""
    merged = dict(predicted or {})
    merged.update({c: float(g) for c, g in human.items()})
    return merged
