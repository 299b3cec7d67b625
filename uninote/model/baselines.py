"""Zero-shot baselines with the model's inference API (``embed_corpus``, ``encode_query``).

- ``baseline:text``   frozen MiniLM, mean pooled, normalised (384-d); no photo/region vectors.
- ``baseline:image``  frozen EfficientNet-Lite0 pooled features (1280-d); note = normalised mean of
                      its photos; regions = the pooled grid cells of the feature map; text = zeros.
- ``baseline:concat`` [text ; image] of the two above, each normalised, then re-normalised (1664-d);
                      text/photo/region vectors sit in their own block of the same space.

They share the backbone feature cache with ``UniNoteModel`` (same backbone settings), so a
baseline over a corpus the model has seen costs only a few numpy operations.
"""

from __future__ import annotations

import hashlib
import json

import torch
import torch.nn.functional as F

from uninote.embeddings import QueryEmbedding
from uninote.errors import ConfigError
from uninote.model.config import UniNoteConfig
from uninote.model.features import corpus_features, embed_from_features
from uninote.model.fusion import mean_by_owner
from uninote.model.inputs import FeatureInputs
from uninote.model.towers import build_image_tower, build_text_tower

BASELINES = ("baseline:text", "baseline:image", "baseline:concat")


class BaselineModel(FeatureInputs):
    """A frozen-backbone baseline; towers are loaded only when features must be computed."""

    def __init__(self, kind: str, config: UniNoteConfig | None = None):
        if kind not in ("text", "image", "concat"):
            raise ConfigError(f"unknown baseline {kind!r}; use one of {BASELINES}")
        self.kind, self.config = kind, (config or UniNoteConfig()).validate()
        self.device = torch.device("cpu")
        self._towers: dict = {}

    @property
    def text_tower(self):
        if "text" not in self._towers:
            self._towers["text"] = build_text_tower(self.config).eval()
        return self._towers["text"]

    @property
    def image_tower(self):
        if "image" not in self._towers:
            self._towers["image"] = build_image_tower(self.config).eval()
        return self._towers["image"]

    @property
    def version(self) -> str:
        cfg = {k: getattr(self.config, k) for k in ("text_tower", "image_tower", "image_size", "n_regions")}
        return f"{self.kind}-" + hashlib.sha256(json.dumps([self.kind, cfg]).encode()).hexdigest()[:8]

    @torch.inference_mode()
    def forward_features(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Same outputs as ``UniNoteModel.forward_features`` (all normalised)."""
        text = F.normalize(batch["text"].float(), dim=-1)
        n = len(text)
        owner = batch["image_owner"].long()
        image = F.normalize(batch["image"].float(), dim=-1)
        regions = batch.get("region")
        m = len(image)
        region = F.normalize(regions.float(), dim=-1).reshape(-1, image.shape[-1]) if regions is not None \
            else image.new_zeros(0, image.shape[-1])
        region_image = torch.arange(m).repeat_interleave(region.shape[0] // max(m, 1)) if m else \
            torch.zeros(0, dtype=torch.long)
        image_mean, has_image = mean_by_owner(image, owner, n)
        image_mean = F.normalize(image_mean, dim=-1)
        if self.kind == "text":
            e = text.shape[-1]
            out = {"note": text, "text": text, "image": text.new_zeros(0, e), "region": text.new_zeros(0, e)}
            owner, region_image = owner[:0], region_image[:0]
        elif self.kind == "image":
            out = {"note": image_mean, "text": torch.zeros_like(image_mean), "image": image, "region": region}
        else:
            t_dim, i_dim = text.shape[-1], image.shape[-1]
            pad = lambda x, left: F.pad(x, (t_dim, 0) if left else (0, i_dim))  # noqa: E731
            out = {"note": F.normalize(torch.cat([text, image_mean], dim=-1), dim=-1), "text": pad(text, False),
                   "image": pad(image, True), "region": pad(region, True)}
        out.update(image_owner=owner, region_image=region_image, region_owner=owner[region_image],
                   has_image=has_image)
        return out

    def embed_corpus(self, corpus, batch_size: int = 1024, progress: bool = True):
        feats = corpus_features(corpus, self, progress=progress, use_cache=True)
        return embed_from_features(self, feats, batch_size=batch_size, progress=progress)

    @torch.inference_mode()
    def encode_query(self, note, root=None):
        out = self.forward_features(self.note_batch([note], root))
        has_img, has_reg = len(out["image"]) > 0, len(out["region"]) > 0
        return QueryEmbedding(note=out["note"][0].numpy(), text=out["text"][0].numpy(),
                              images=out["image"].numpy() if has_img else None,
                              regions=out["region"].numpy() if has_reg else None,
                              region_image=out["region_image"].numpy() if has_reg else None)

    @property
    def embed_dim(self) -> int:
        t, i = self.text_tower.feature_dim, self.image_tower.feature_dim
        return {"text": t, "image": i, "concat": t + i}[self.kind]

    def eval(self):
        return self


def load_baseline(spec: str, config: UniNoteConfig | None = None) -> BaselineModel:
    if spec not in BASELINES:
        raise ConfigError(f"unknown baseline {spec!r}; use one of {', '.join(BASELINES)}")
    return BaselineModel(spec.split(":", 1)[1], config)
