"""Projection heads into the shared space and the fusion of text and photos into one note vector.

Every output lives in ONE space of dim ``D``; heads and fusion are the trainable part of a
frozen-backbone model.

Fusion (``NoteFusion``): with ``t`` the normalised text vector, ``v`` the normalised mean of the
note's normalised photo vectors (zero when the note has no photo) and flags ``h_t, h_v``,

    note = normalise( a * h_t * t + b * h_v * v + MLP([h_t t, h_v v, t * v, h_t, h_v]) )

so a text-only note, an image-only note and a multi-photo note are all well defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """Backbone features (.., F) -> shared space (.., D): LayerNorm, 2-layer MLP plus a linear skip."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, out_dim))
        self.skip = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x.float())
        return self.mlp(x) + self.skip(x)


class TokenAttentionPool(nn.Module):
    """Pools a text's token states (B, T, F) into one (B, F) feature: softmax(states @ query) over
    the kept tokens. ``query`` starts at zero, where the weights are uniform and this is exactly the
    backbone's masked mean pooling; training it lets the model weigh the tokens that decide
    relevance (a colour or a product type in a title) above the rest."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = states.float()
        scores = (states @ self.query).masked_fill(~mask, torch.finfo(states.dtype).min)
        weights = torch.softmax(scores, dim=1) * mask  # a text with no kept token pools to 0
        return (weights.unsqueeze(-1) * states).sum(1)


def mean_by_owner(vectors: torch.Tensor, owner: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the rows of ``vectors`` (M, D) per owner in [0, n) -> (n, D) and a has-any mask (n,)."""
    sums = vectors.new_zeros(n, vectors.shape[-1]).index_add(0, owner, vectors)
    counts = torch.bincount(owner, minlength=n).to(vectors.dtype)
    return sums / counts.clamp(min=1).unsqueeze(-1), counts > 0


class NoteFusion(nn.Module):
    """Fuses a note's text vector with the mean of its photo vectors (see the module docstring)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.text_weight = nn.Parameter(torch.tensor(1.0))
        self.image_weight = nn.Parameter(torch.tensor(1.0))
        self.mlp = nn.Sequential(nn.Linear(3 * dim + 2, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, text: torch.Tensor, has_text: torch.Tensor, image_mean: torch.Tensor,
                has_image: torch.Tensor) -> torch.Tensor:
        ht = has_text.to(text.dtype).unsqueeze(-1)
        hv = has_image.to(text.dtype).unsqueeze(-1)
        t = F.normalize(text, dim=-1) * ht
        v = F.normalize(image_mean, dim=-1) * hv
        mixed = self.mlp(torch.cat([t, v, t * v, ht, hv], dim=-1))
        return self.text_weight * t + self.image_weight * v + mixed
