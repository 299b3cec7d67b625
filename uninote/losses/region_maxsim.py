"""Region max-sim (late-interaction) contrastive loss: trains local vectors for fine-grained matches.

Equation (Chamfer / ColBERT max-sim, Khattab & Zaharia 2020; used contrastively as in FILIP,
Yao et al. 2022): for query note i with region vectors r_i^a (a = 1..R) and candidate note j,

    s(i, j) = 1/R sum_a max_b  r_i^a . c_j^b
    L = -1/B sum_i log  exp(s(i, i) / tau) / sum_j m_ij exp(s(i, j) / tau)

Inputs: ``query_regions`` (B, R, D), ``candidate_regions`` (B, R, D) normalised rows, the
candidate of row i being query i's positive; ``valid`` (B,) bool drops rows without photos;
``in_batch_mask`` (B, B) as in ``InfoNCELoss``. Matches the scorer in ``uninote/index/scoring.py``.

Example:
    >>> RegionMaxSimLoss(0.05)(F.normalize(torch.randn(4, 9, 16), dim=-1), F.normalize(torch.randn(4, 9, 16), dim=-1))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def maxsim_matrix(query_regions: torch.Tensor, candidate_regions: torch.Tensor) -> torch.Tensor:
    """(B, C) Chamfer scores: mean over query regions of the best candidate region."""
    b, r, d = query_regions.shape
    c, r2, _ = candidate_regions.shape
    sims = (query_regions.reshape(b * r, d) @ candidate_regions.reshape(c * r2, d).T).reshape(b, r, c, r2)
    return sims.max(dim=-1).values.mean(dim=1)


class RegionMaxSimLoss(nn.Module):
    def __init__(self, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature

    def forward(self, query_regions: torch.Tensor, candidate_regions: torch.Tensor,
                valid: torch.Tensor | None = None, in_batch_mask: torch.Tensor | None = None) -> torch.Tensor:
        if valid is not None:
            keep_rows = valid.bool()
            query_regions, candidate_regions = query_regions[keep_rows], candidate_regions[keep_rows]
            if in_batch_mask is not None:
                in_batch_mask = in_batch_mask[keep_rows][:, keep_rows]
        b = query_regions.shape[0]
        if b == 0:
            return query_regions.new_zeros(())
        logits = maxsim_matrix(query_regions, candidate_regions) / self.temperature
        if in_batch_mask is not None:
            keep = in_batch_mask.bool() | torch.eye(b, dtype=torch.bool, device=logits.device)
            logits = logits.masked_fill(~keep, float("-inf"))
        return F.cross_entropy(logits, torch.arange(b, device=logits.device))
