"""Matryoshka loss: a base loss applied to truncated, re-normalised prefixes of ONE forward pass.

Equation (Kusupati et al. 2022, "Matryoshka Representation Learning"; API after
sentence-transformers ``MatryoshkaLoss``): for prefix dims d_1 < ... < d_m with weights w_k,

    L = sum_k w_k * L_base( normalise(e[..., :d_k]) for every embedding e )

The embeddings are computed once by the caller; this wrapper only slices them, so the encoder
runs once per step whatever the number of dims. Any base loss works: every floating tensor
argument (also inside dicts, lists, tuples) whose last dim equals ``full_dim`` (default
``max(dims)``) is truncated and re-normalised; everything else (indices, masks) passes through.

Inputs: the base loss's arguments. ``last_losses`` holds the per-dim values of the last call.

``matryoshka_prefix(x, dim)`` is the one place a prefix is cut: every other user of Matryoshka
prefixes (the RL loss scores its rankings with it) calls it too.

Example:
    >>> loss = MatryoshkaLoss(InfoNCELoss(0.05), dims=[64, 128, 768])
    >>> loss(q, p)   # q, p: (B, 768) from one forward pass
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def matryoshka_prefix(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The first ``dim`` coordinates of each embedding (last axis), re-normalised to unit length.

    >>> matryoshka_prefix(torch.tensor([[3.0, 4.0, 12.0]]), 2)
    tensor([[0.6000, 0.8000]])
    """
    return F.normalize(x[..., :dim], dim=-1)


class MatryoshkaLoss(nn.Module):
    def __init__(self, base_loss: nn.Module, dims: Sequence[int], weights: Sequence[float] | None = None,
                 full_dim: int | None = None):
        super().__init__()
        dims = [int(d) for d in dims]
        if not dims or dims != sorted(set(dims)) or dims[0] < 1:
            raise ValueError(f"dims must be strictly increasing positive ints, got {dims}")
        weights = [1.0] * len(dims) if weights is None else [float(w) for w in weights]
        if len(weights) != len(dims):
            raise ValueError(f"{len(weights)} weights for {len(dims)} dims: give one weight per dim")
        self.base_loss, self.dims, self.weights = base_loss, dims, weights
        self.full_dim = full_dim or max(dims)
        if max(dims) > self.full_dim:
            raise ValueError(f"dims {dims} exceed full_dim {self.full_dim}")
        self.last_losses: dict[int, float] = {}

    def _cut(self, obj, dim: int):
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and obj.ndim >= 1 and obj.shape[-1] == self.full_dim:
                return obj if dim == self.full_dim else matryoshka_prefix(obj, dim)
            return obj
        if isinstance(obj, dict):
            return {k: self._cut(v, dim) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._cut(v, dim) for v in obj)
        return obj

    def forward(self, *args, **kwargs) -> torch.Tensor:
        total, self.last_losses = None, {}
        for dim, w in zip(self.dims, self.weights):
            value = self.base_loss(*self._cut(args, dim), **self._cut(kwargs, dim))
            self.last_losses[dim] = float(value.detach())
            total = w * value if total is None else total + w * value
        return total
