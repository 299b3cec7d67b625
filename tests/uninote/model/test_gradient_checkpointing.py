"""Gradient checkpointing of the image backbone: the recomputed chain trains exactly as the kept one."""

import copy

import pytest
import torch

from uninote.model.towers import EfficientNetLiteTower, HFImageTower


def one_step(tower, pixels: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, dict, dict]:
    """Features, gradients and buffers (BatchNorm statistics) after one training step's backward."""
    torch.manual_seed(seed)  # stochastic depth draws here, and again when a block is recomputed
    out = tower(pixels)
    (out.square().mean() + out.mean()).backward()
    grads = {n: p.grad.clone() for n, p in tower.named_parameters() if p.grad is not None}
    return out.detach(), grads, {n: b.clone() for n, b in tower.named_buffers()}


def test_recomputed_efficientnet_trains_like_the_kept_one():
    """Real EfficientNet-Lite0 in training mode (BatchNorm on batch statistics, stochastic depth):
    same features, same gradients, and running statistics moved once, not twice."""
    torch.set_num_threads(1)
    kept = EfficientNetLiteTower(64).train()
    recomputing = copy.deepcopy(kept)
    recomputing.gradient_checkpointing = True
    calls = []
    recomputing.net._blocks[5].register_forward_pre_hook(lambda *_: calls.append(1))
    pixels = torch.randn(3, 3, 64, 64)

    out, grads, buffers = one_step(kept, pixels)
    out_r, grads_r, buffers_r = one_step(recomputing, pixels)

    assert len(calls) == 2  # the block ran again in the backward pass
    assert torch.equal(out, out_r)
    assert grads.keys() == grads_r.keys() and len(grads) > 100
    for name in grads:
        torch.testing.assert_close(grads_r[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)
    for name in buffers:
        assert torch.equal(buffers_r[name], buffers[name]), name
    with torch.no_grad():  # inference never recomputes
        recomputing.eval()(pixels)
    assert len(calls) == 3


def test_stochastic_depth_is_active_in_the_recomputed_chain():
    """Two seeds give two outputs in training mode: the chain draws its drop-connect masks."""
    tower = EfficientNetLiteTower(64).train()
    tower.gradient_checkpointing = True
    pixels = torch.randn(2, 3, 64, 64)
    assert not torch.equal(one_step(tower, pixels, seed=0)[0], one_step(tower, pixels, seed=1)[0])


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit")
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32)).save_pretrained(folder)
    return folder


def test_hugging_face_image_tower_uses_its_own_checkpointing(vit_folder):
    kept = HFImageTower(str(vit_folder)).train()
    recomputing = HFImageTower(str(vit_folder)).train()
    recomputing.gradient_checkpointing = True
    assert recomputing.gradient_checkpointing and not kept.gradient_checkpointing
    pixels = torch.randn(2, 3, 32, 32)
    out, grads, _ = one_step(kept, pixels)
    out_r, grads_r, _ = one_step(recomputing, pixels)
    torch.testing.assert_close(out_r, out)
    for name in grads:
        torch.testing.assert_close(grads_r[name], grads[name], msg=name)
    recomputing.gradient_checkpointing = False
    assert not recomputing.gradient_checkpointing
