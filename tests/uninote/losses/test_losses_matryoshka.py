import pytest
import torch
import torch.nn.functional as F

from uninote.losses import InfoNCELoss, MatryoshkaLoss, RegionMaxSimLoss, matryoshka_prefix


def test_equals_weighted_sum_of_base_loss_on_renormalised_prefixes():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(6, 32, generator=g), dim=-1)
    p = F.normalize(torch.randn(6, 32, generator=g), dim=-1)
    base = InfoNCELoss(0.1)
    dims, weights = [4, 8, 32], [0.5, 1.0, 2.0]
    got = MatryoshkaLoss(base, dims, weights)(q, p)
    manual = sum(w * base(F.normalize(q[:, :d], dim=-1), F.normalize(p[:, :d], dim=-1))
                 for d, w in zip(dims, weights))
    assert got.item() == pytest.approx(manual.item(), rel=1e-6)


def test_truncates_inside_dicts_and_leaves_integer_tensors_alone():
    seen = []

    def base(emb, idx):
        seen.append((emb["x"].shape[-1], emb["x"].norm(dim=-1), idx["rows"].clone()))
        return emb["x"].sum() * 0

    x = torch.randn(3, 16)
    rows = torch.tensor([0, 2, 1])
    MatryoshkaLoss(base, [4, 16])({"x": x}, {"rows": rows})
    assert [s[0] for s in seen] == [4, 16]
    assert torch.allclose(seen[0][1], torch.ones(3))  # prefix re-normalised
    assert all(torch.equal(s[2], rows) for s in seen)


def test_per_dim_losses_are_recorded_and_gradients_flow_through_one_pass():
    calls = {"n": 0}
    w = torch.nn.Parameter(torch.randn(16, 16))

    def encode(x):
        calls["n"] += 1
        return F.normalize(x @ w, dim=-1)

    x = torch.randn(5, 16)
    loss_fn = MatryoshkaLoss(InfoNCELoss(0.1), [4, 8, 16])
    emb = encode(x)
    loss = loss_fn(emb, emb.roll(1, 0))
    loss.backward()
    assert calls["n"] == 1 and w.grad is not None and w.grad.abs().sum() > 0
    assert sorted(loss_fn.last_losses) == [4, 8, 16]


def test_wraps_region_loss_too():
    g = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(4, 3, 16, generator=g), dim=-1)
    b = F.normalize(torch.randn(4, 3, 16, generator=g), dim=-1)
    base = RegionMaxSimLoss(0.1)
    got = MatryoshkaLoss(base, [8, 16])(a, b).item()
    manual = base(F.normalize(a[..., :8], dim=-1), F.normalize(b[..., :8], dim=-1)) + base(a, b)
    assert got == pytest.approx(manual.item(), rel=1e-6)


@pytest.mark.parametrize("dims,weights", [([8, 4], None), ([], None), ([4, 8], [1.0])])
def test_bad_dims_or_weights_fail(dims, weights):
    with pytest.raises(ValueError):
        MatryoshkaLoss(InfoNCELoss(), dims, weights)


def test_prefix_is_the_renormalised_head_of_every_row():
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    got = matryoshka_prefix(x, 4)
    assert got.shape == (2, 5, 4)
    assert torch.allclose(got.norm(dim=-1), torch.ones(2, 5))
    assert torch.allclose(got * x[..., :4].norm(dim=-1, keepdim=True), x[..., :4], atol=1e-6)
