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


def listnet_loss(logits: torch.Tensor, grades: torch.Tensor, valid: torch.Tensor | None = None,
                 power: float = 1.0) -> torch.Tensor:
    """ListNet cross-entropy of the first-choice softmax against the grades' gain distribution.

    A listwise, sampling-free companion of the policy gradient (variance reduction, not a
    replacement): each query's target is ``p*_j = gain_j / sum_k gain_k`` with ``gain = 2**g - 1``
    over its valid candidates (``gain**power`` with ``power`` != 1: a sharper target, larger margins
    between grades), and the loss is ``-sum_j p*_j log softmax(logits)_j`` averaged over
    queries that have a positive gain (0 when none has). ``logits`` (Q, P), ``grades`` (Q, P).
    """
    if valid is None:
        valid = torch.ones_like(logits, dtype=torch.bool)
    gains = torch.where(valid, torch.pow(2.0, grades.to(logits.dtype).nan_to_num(0.0)) - 1.0,
                        torch.zeros_like(logits)).pow(power)
    total = gains.sum(dim=-1, keepdim=True)
    has = total.squeeze(-1) > 0
    if not has.any():
        return logits.sum() * 0.0
    target = gains / total.clamp(min=1e-12)
    logp = torch.log_softmax(logits.masked_fill(~valid, torch.finfo(logits.dtype).min), dim=-1)
    ce = -(target * logp.masked_fill(~valid, 0.0)).sum(dim=-1)
    return ce[has].mean()
