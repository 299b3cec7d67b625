import math

import pytest
import torch
import torch.nn.functional as F

from uninote.losses import InfoNCELoss


def manual_infonce(q, p, negs, tau, keep=None):
    """Hand-written reference: loop over queries, sum exp over allowed candidates."""
    total = 0.0
    for i in range(len(q)):
        denom = 0.0
        for j in range(len(p)):
            if keep is None or keep[i][j] or i == j:
                denom += math.exp(float(q[i] @ p[j]) / tau)
        if negs is not None:
            for n in negs[i]:
                denom += math.exp(float(q[i] @ n) / tau)
        total += -(float(q[i] @ p[i]) / tau - math.log(denom))
    return total / len(q)


def test_infonce_hand_computed_two_by_two():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # query 0: sims 1.0 (pos), 0.6 ; query 1: sims 0.0, 0.8 (pos); tau = 1
    expected = 0.5 * (-(1.0 - math.log(math.exp(1.0) + math.exp(0.6)))
                      - (0.8 - math.log(math.exp(0.0) + math.exp(0.8))))
    assert InfoNCELoss(temperature=1.0)(q, p).item() == pytest.approx(expected, abs=1e-6)


def test_infonce_with_hard_negatives_and_mask_matches_reference():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    p = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    n = F.normalize(torch.randn(5, 3, 8, generator=g), dim=-1)
    keep = torch.rand(5, 5, generator=g) > 0.4
    got = InfoNCELoss(0.1)(q, p, n, None, keep).item()
    assert got == pytest.approx(manual_infonce(q, p, n, 0.1, keep.tolist()), rel=1e-5)


def test_padded_hard_negatives_are_ignored():
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    p = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    n = F.normalize(torch.randn(4, 2, 8, generator=g), dim=-1)
    mask = torch.tensor([[True, False]] * 4)
    loss = InfoNCELoss(0.1)
    assert loss(q, p, n, mask).item() == pytest.approx(loss(q, p, n[:, :1]).item(), rel=1e-6)


def test_symmetric_averages_both_directions():
    g = torch.Generator().manual_seed(2)
    q = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    p = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    both = InfoNCELoss(0.2, symmetric=True)(q, p).item()
    one, back = InfoNCELoss(0.2)(q, p).item(), InfoNCELoss(0.2)(p, q).item()
    assert both == pytest.approx(0.5 * (one + back), rel=1e-6)


def test_bad_temperature_fails():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(0.0)
