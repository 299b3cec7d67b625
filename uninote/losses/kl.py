"""KL penalty that keeps the RL policy close to the frozen SFT reference.

Exact listwise KL (default). Each query's candidate pool defines a first-choice distribution
``p_theta = softmax(s_theta / tau)`` (the first factor of the Plackett-Luce model) under the
policy and ``p_ref = softmax(s_ref / tau)`` under the reference. The penalty is

    KL(p_theta || p_ref) = sum_j p_theta(j) * (log p_theta(j) - log p_ref(j))

averaged over queries, with padded candidates (``valid=False``) left out of both softmaxes. It is
exact (no sampling noise), non-negative, and zero iff the two scorings agree up to a constant.

Sampled estimator (``k3``; Schulman 2020 "Approximating KL divergence", used by GRPO/TRL):

    KL ~ mean_i [ exp(r_i) - r_i - 1 ],   r_i = log pi_ref(rank_i) - log pi_theta(rank_i)

on the sampled rankings' Plackett-Luce log-probabilities; unbiased and always >= 0 per sample.

Example::

    loss = pg_loss + beta * listwise_kl(sim / tau, sim_ref / tau, valid)

Distillation (``distill``; Hinton et al. 2015, SFT's ``image_note_kd`` / ``image_image_kd``) is the
other direction, KL(p_teacher || p_student) with the teacher detached by the caller: the student
is pulled to cover every candidate the teacher ranks high, rather than kept near a reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def listwise_kl(logits: torch.Tensor, ref_logits: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over queries of KL(softmax(logits) || softmax(ref_logits)); both (Q, P)."""
    ref_logits = ref_logits.detach().to(logits.dtype)
    if valid is not None:
        neg_inf = torch.finfo(logits.dtype).min
        logits = logits.masked_fill(~valid, neg_inf)
        ref_logits = ref_logits.masked_fill(~valid, neg_inf)
    logp = F.log_softmax(logits, dim=-1)
    logq = F.log_softmax(ref_logits, dim=-1)
    p = logp.exp()
    terms = p * (logp - logq)
    if valid is not None:
        terms = terms.masked_fill(~valid, 0.0)
    return terms.sum(dim=-1).mean()


def distill(student: torch.Tensor, teacher: torch.Tensor, skip: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of KL(softmax(teacher / t) || softmax(student / t)), both (Q, P), ``skip``
    (Q, P) bool cells left out of both softmaxes."""
    neg_inf = torch.finfo(student.dtype).min
    log_s = F.log_softmax((student / temperature).masked_fill(skip, neg_inf), dim=-1)
    log_t = F.log_softmax((teacher / temperature).masked_fill(skip, neg_inf), dim=-1)
    return (log_t.exp() * (log_t - log_s)).masked_fill(skip, 0.0).sum(-1).mean()


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Schulman's k3 estimator ``exp(r) - r - 1`` with ``r = ref_logp - logp``, averaged."""
    r = ref_logp.detach().to(logp.dtype) - logp
    terms = torch.exp(r) - r - 1.0
    if mask is None:
        return terms.mean()
    count = mask.sum()
    return terms.masked_fill(~mask, 0.0).sum() / count.clamp(min=1)


KL_ESTIMATORS = ("listwise", "k3")
