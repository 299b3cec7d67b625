"""Group-relative policy-gradient loss for rankings (GRPO without ratio clipping, on-policy).

Equation (Williams 1992 REINFORCE with the GRPO group baseline; Shao et al. 2024):

    L_pg = - (1 / |S|) * sum_{(q, i) in S} A_{q,i} * log pi_theta(rank_{q,i} | q)

where ``rank_{q,i}`` is the i-th ranking sampled for query q from the current policy, ``A`` its
group-normalised advantage (``uninote.train.advantages.group_advantages``) and ``S`` the samples
with a defined reward. Because samples are drawn from the very policy being updated (one update
per batch), the PPO ratio is 1 and clipping would be a no-op; the gradient is exactly REINFORCE.

Inputs: ``logp`` (Q, G) differentiable Plackett-Luce log-probabilities, ``advantages`` (Q, G)
(no gradient), optional ``mask`` (Q, G) of samples to count.

Example::

    logp = plackett_luce.log_prob(sim / tau, rankings)          # (Q, G)
    loss = policy_gradient_loss(logp, group_advantages(rewards))
"""

from __future__ import annotations

import torch


def policy_gradient_loss(logp: torch.Tensor, advantages: torch.Tensor,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """``-mean(A * log pi)`` over the masked samples (0 if none)."""
    advantages = advantages.detach().to(logp.dtype)
    if mask is None:
        mask = torch.ones_like(logp, dtype=torch.bool)
    count = mask.sum()
    if count == 0:
        return logp.sum() * 0.0
    return -(advantages * logp).masked_fill(~mask, 0.0).sum() / count
