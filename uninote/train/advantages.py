"""Group-relative advantages (GRPO, Shao et al. 2024 "DeepSeekMath"; TRL ``GRPOTrainer``).

For each query the policy samples a group of G rankings with rewards ``r_1..r_G``. The advantage
of sample i is its reward relative to the group:

    A_i = (r_i - mean(r)) / (std(r) + eps)      scale="group"  (GRPO)
    A_i = (r_i - mean(r)) / (std(R) + eps)      scale="batch"  (std over the whole batch, Dr. GRPO-ish)
    A_i =  r_i - mean(r)                        scale="none"

``std`` is the population standard deviation over the finite entries. Rewards that are ``NaN``
(undefined, ``None`` from a reward function) get advantage 0 and are left out of the statistics;
a group whose rewards are all equal gets advantages 0 (it carries no ranking signal).
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")


def group_advantages(rewards: torch.Tensor, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """Advantages (Q, G) from rewards (Q, G); NaN rewards are masked out and get 0."""
    if scale not in SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; expected one of {SCALES}")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (queries, group) shaped, got {tuple(rewards.shape)}")
    valid = torch.isfinite(rewards)
    r = torch.where(valid, rewards, torch.zeros_like(rewards))
    count = valid.sum(dim=1, keepdim=True).clamp(min=1)
    mean = r.sum(dim=1, keepdim=True) / count
    centred = torch.where(valid, rewards - mean, torch.zeros_like(rewards))
    if scale == "none":
        return centred
    if scale == "group":
        std = (centred.pow(2).sum(dim=1, keepdim=True) / count).sqrt()
    else:
        n = valid.sum().clamp(min=1)
        batch_mean = r.sum() / n
        std = (torch.where(valid, rewards - batch_mean, torch.zeros_like(rewards)).pow(2).sum() / n).sqrt()
        std = std.expand_as(mean)
    adv = centred / (std + eps)
    # a constant group has centred == 0 already; keep exact zeros (no 0/eps noise)
    return torch.where(valid, adv, torch.zeros_like(adv))


def rewards_to_tensor(rewards: list[list[float | None]]) -> torch.Tensor:
    """Nested reward lists (None for undefined) -> float tensor with NaN for None."""
    return torch.tensor([[float("nan") if r is None else float(r) for r in row] for row in rewards],
                        dtype=torch.float32)
