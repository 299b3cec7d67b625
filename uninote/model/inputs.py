"""Raw inputs (texts, PIL photos, notes) -> backbone features, shared by the model and baselines.

A class mixing this in provides ``config`` (``UniNoteConfig``), ``text_tower``, ``image_tower`` and
``device``; the methods return what ``forward_features`` / the feature cache consume.
"""

from __future__ import annotations

from pathlib import Path

import torch

from uninote.data.images import load_image
from uninote.model.onnx_runtime import inference_tower
from uninote.model.towers import colour_histograms, load_pixels, normalize_pixels, pool_image, run_blocks


class FeatureInputs:
    runtime: str | None = None  # 'auto' | 'onnx' | 'torch' | 'onnx-int8'; None: $UNINOTE_RUNTIME (see onnx_runtime)

    @property
    def image_feature_dim(self) -> int:
        """Width of a photo's (and a region's) features: the image backbone's, plus the colour histogram."""
        return self.image_tower.feature_dim + getattr(self.config, "colour_dim", 0)

    def backbone(self, kind: str):
        """The ``kind`` ('text' | 'image') tower this call runs: torch, or its ONNX Runtime twin."""
        return inference_tower(self, kind)

    def text_features(self, texts: list[str]) -> torch.Tensor:
        """(B, F) the backbone's mean-pooled text features."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbones):
            return self.backbone("text")(list(texts)).float()

    def text_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F) token states and their (B, T) bool mask, for ``text_pooling='attention'``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbones):
            states, mask = self.backbone("text").token_states(list(texts))
            return states.float(), mask

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """The text part of a ``forward_features`` batch: pooled features, or token states to pool."""
        if self.config.text_pooling == "attention":
            states, mask = self.text_tokens(texts)
            return {"text_tokens": states, "text_mask": mask}
        return {"text": self.text_features(texts)}

    def image_features(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled (B, F) and region (B, R, F) features of PIL images."""
        if not images:
            width = self.image_feature_dim
            return torch.zeros(0, width), torch.zeros(0, self.config.n_region_cells, width)
        return self.pixel_features(load_pixels(images, self.config.image_size))

    def pixel_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled (B, F) and region (B, R, F) features of uint8 pixels (B, 3, S, S) from ``load_pixels``
        (with ``image_colour_bins``, the photo's and each cell's colour histogram follow the backbone's F)."""
        return self.with_colour(pixels, *self.map_features(self.pixel_maps(pixels)))

    def with_colour(self, pixels: torch.Tensor, pooled: torch.Tensor,
                    regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features of uint8 ``pixels`` with their colour histograms appended (with
        ``image_colour_bins``; unchanged without)."""
        if not self.config.image_colour_bins:
            return pooled, regions
        return self.append_colour(pooled, regions, self.colour_of(pixels.to(pooled.device)))

    def colour_of(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 1 + R, K) colour histograms of uint8 ``pixels``: the photo's, then each region cell's."""
        colour, cells = colour_histograms(pixels, self.config.image_colour_bins, self.config.n_regions)
        return torch.cat([colour[:, None], cells], 1)

    @staticmethod
    def append_colour(pooled: torch.Tensor, regions: torch.Tensor,
                      colour: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled (B, F) and region (B, R, F) features with ``colour_of``'s histograms appended."""
        colour = colour.to(pooled.device, pooled.dtype)
        return torch.cat([pooled, colour[:, 0]], -1), torch.cat([regions, colour[:, 1:]], -1)

    def pixel_maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """The frozen part's feature map of uint8 pixels: the whole tower's output map, or with
        ``image_trained_blocks`` the map at the first trained block's input (what the cache keeps)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbones):
            tower = self.backbone("image")
            pixels = normalize_pixels(pixels.to(self.device), tower.mean, tower.std)
            return tower(pixels).float()

    def map_features(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled (B, F) and region (B, R, F) features of ``pixel_maps`` output: the trained blocks
        (none for a frozen tower) run on it in torch, with gradients when enabled, then the pooling."""
        cut = self.config.image_cut
        if cut is not None:
            maps = run_blocks(self.image_tower, maps.to(self.device, torch.float32), cut)
        return pool_image(maps.float(), self.config.n_regions)

    def note_batch(self, notes, root: str | Path | None) -> dict[str, torch.Tensor]:
        """Backbone features of notes (the ``forward_features`` batch); unreadable photos raise."""
        texts = [n.text() for n in notes]
        images, owner = [], []
        for i, note in enumerate(notes):
            for rel in note.images:
                p = Path(rel)
                images.append(load_image(p if p.is_absolute() or root is None else Path(root) / p))
                owner.append(i)
        pooled, regions = self.image_features(images)
        return {**self.text_inputs(texts), "has_text": torch.tensor([bool(t.strip()) for t in texts]),
                "image": pooled, "image_owner": torch.tensor(owner, dtype=torch.long), "region": regions}

