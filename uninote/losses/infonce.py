"""InfoNCE with in-batch negatives and explicit hard negatives.

Equation (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding";
in-batch + hard negatives as in Karpukhin et al. 2020, DPR), for L2-normalised queries q_i,
positives p_i, hard negatives n_ik and temperature tau:

    L = -1/B sum_i log  exp(q_i.p_i / tau)
                        / ( sum_j m_ij exp(q_i.p_j / tau) + sum_k h_ik exp(q_i.n_ik / tau) )

``m_ij`` (``in_batch_mask``, default all ones) drops in-batch candidates known to be relevant to
query i (false negatives; the diagonal is always kept); ``h_ik`` (``negative_mask``) drops padded
hard negatives. ``symmetric=True`` averages with the positive->query direction (in-batch only).

Inputs: ``query`` (B, D), ``positive`` (B, D), ``negatives`` (B, K, D) or None, rows normalised
(the loss does not normalise, so Matryoshka prefixes must be re-normalised by the caller).

Example:
    >>> q = F.normalize(torch.randn(4, 8), dim=-1); p = F.normalize(q + 0.1 * torch.randn(4, 8), dim=-1)
    >>> InfoNCELoss(temperature=0.05)(q, p)  # small: each q_i is closest to its p_i
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.05, symmetric: bool = False):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.symmetric = temperature, symmetric

    def forward(self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor | None = None,
                negative_mask: torch.Tensor | None = None,
                in_batch_mask: torch.Tensor | None = None) -> torch.Tensor:
        if len(query) == 0:
            return query.new_zeros(())
        b = query.shape[0]
        eye = torch.eye(b, dtype=torch.bool, device=query.device)
        keep = torch.ones_like(eye) if in_batch_mask is None else (in_batch_mask.to(query.device).bool() | eye)
        sims = query @ positive.T / self.temperature  # (B, B)
        logits = sims.masked_fill(~keep, float("-inf"))
        if negatives is not None and negatives.shape[1] > 0:
            hard = torch.einsum("bd,bkd->bk", query, negatives) / self.temperature
            if negative_mask is not None:
                hard = hard.masked_fill(~negative_mask.to(query.device).bool(), float("-inf"))
            logits = torch.cat([logits, hard], dim=1)
        target = torch.arange(b, device=query.device)
        loss = F.cross_entropy(logits, target)
        if self.symmetric:
            back = sims.T.masked_fill(~keep.T, float("-inf"))
            loss = 0.5 * (loss + F.cross_entropy(back, target))
        return loss
