import numpy as np
import pytest
import torch
import torch.nn.functional as F

from uninote.index.scoring import maxsim_scores
from uninote.losses import RegionMaxSimLoss, maxsim_matrix


def test_maxsim_matrix_matches_the_index_reference_scorer():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(3, 4, 8, generator=g), dim=-1)
    c = F.normalize(torch.randn(5, 4, 8, generator=g), dim=-1)
    got = maxsim_matrix(q, c).numpy()
    vectors = c.reshape(-1, 8).numpy()
    owner = np.repeat(np.arange(5), 4)
    for i in range(3):
        ref = maxsim_scores(q[i].numpy(), vectors, owner, 5)
        assert np.allclose(got[i], ref, atol=1e-5)


def test_region_loss_is_cross_entropy_over_maxsim_and_skips_invalid_rows():
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(4, 2, 8, generator=g), dim=-1)
    c = F.normalize(torch.randn(4, 2, 8, generator=g), dim=-1)
    valid = torch.tensor([True, False, True, True])
    got = RegionMaxSimLoss(0.5)(q, c, valid).item()
    s = maxsim_matrix(q[valid], c[valid]) / 0.5
    ref = F.cross_entropy(s, torch.arange(3)).item()
    assert got == pytest.approx(ref, rel=1e-6)
    assert RegionMaxSimLoss()(q, c, torch.zeros(4, dtype=torch.bool)).item() == 0.0
