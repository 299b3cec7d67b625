"""The ranking policy: a Plackett-Luce distribution over a candidate pool.

For a query with candidate logits ``s_1..s_P`` (``s_j = sim(q, c_j) / tau``) the probability of
the top-k ranking ``pi = (pi_1, .., pi_k)`` is (Plackett 1975, Luce 1959)

    P(pi) = prod_{i=1..k} exp(s_{pi_i}) / sum_{j not in {pi_1..pi_{i-1}}} exp(s_j)

so ``log P(pi) = sum_i [ s_{pi_i} - logsumexp_{j remaining at step i} s_j ]``. Sampling uses the
Gumbel-top-k trick: the k largest of ``s_j + Gumbel(0, 1)`` are an exact PL sample (Kool et al.
2019). Pools are padded to a common size P with ``valid=False`` entries, which are never sampled
and never enter a normaliser.
"""

from __future__ import annotations

import torch


def sample_rankings(logits: torch.Tensor, n_samples: int, k: int, valid: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample ``n_samples`` top-k rankings per query: logits (Q, P) -> indices (Q, n_samples, k).

    ``k`` is capped by the smallest number of valid candidates of any query.
    """
    logits = logits.detach().float()
    if valid is None:
        valid = torch.ones_like(logits, dtype=torch.bool)
    k = int(min(k, int(valid.sum(dim=1).min())))
    if k < 1:
        raise ValueError("every query needs at least one valid candidate")
    q, p = logits.shape
    u = torch.rand((q, n_samples, p), generator=generator, device=logits.device if generator is None
                   else generator.device).to(logits.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
    perturbed = logits.unsqueeze(1) + gumbel
    perturbed = perturbed.masked_fill(~valid.unsqueeze(1), float("-inf"))
    return perturbed.topk(k, dim=-1).indices


def log_prob(logits: torch.Tensor, rankings: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Plackett-Luce log-probability of each ranking: logits (Q, P), rankings (Q, G, k) -> (Q, G).

    Differentiable in ``logits``.
    """
    q, p = logits.shape
    _, g, k = rankings.shape
    neg_inf = torch.finfo(logits.dtype).min
    base = logits if valid is None else logits.masked_fill(~valid, neg_inf)
    expanded = base.unsqueeze(1).expand(q, g, p)
    chosen = torch.gather(expanded, 2, rankings)  # (Q, G, k)
    # taken[q, g, i, j] = candidate j was placed before position i
    one_hot = torch.zeros(q, g, k, p, dtype=torch.bool, device=logits.device)
    one_hot.scatter_(3, rankings.unsqueeze(-1), True)
    taken = torch.cumsum(one_hot.int(), dim=2) - one_hot.int()
    remaining = expanded.unsqueeze(2).masked_fill(taken.bool(), neg_inf)  # (Q, G, k, P)
    return (chosen - torch.logsumexp(remaining, dim=-1)).sum(dim=-1)
