"""``UniNoteModel``: towers + heads + fusion, one embedding space for notes, texts, photos, regions.

Two ways in:
- from raw inputs: ``encode_text``, ``encode_image``, ``encode_regions``, ``encode_note``,
  ``encode_query``, ``embed_corpus`` (inference API, see docs/DESIGN.md);
- from backbone features: ``forward_features(batch)`` -- the training entry point used by SFT and
  RL. With frozen backbones the features are precomputed once per corpus
  (``uninote.model.features``), so training and re-embedding only run the small heads.

Every output passes through one gain per Matryoshka segment (dims ``[0, 64)``, ``[64, 128)``, ...)
before it is normalised: ``SEGMENT_GAIN`` holds their logs. At zero (SFT's value) they are the
identity; the RL stage learns them, which sets how much each prefix's later dims weigh against
its first ones.

Text features are the backbone's mean-pooled token states (``text_pooling='mean'``), or, with
``'attention'``, the token states pooled by ``TokenAttentionPool`` (``TEXT_POOL`` is its query). At
zero (SFT's value) that is the same mean; the RL stage switches it on (``use_token_pooling``) and
learns which tokens weigh more.

With ``image_trained_blocks`` the last blocks of the image tower train too (frozen backbones
otherwise): their weights join the trainable state dict (checkpoint keys under ``image_tower.``,
the frozen rest still referenced by name), and a feature batch may carry ``image_map``, the
feature map at the first trained block's input, which ``forward_features`` runs through them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import HfApi, snapshot_download
from safetensors.torch import load_file, save_file
from torch import nn

from uninote.embeddings import QueryEmbedding
from uninote.errors import ConfigError
from uninote.model.config import UniNoteConfig
from uninote.model.features import corpus_features, embed_from_features
from uninote.model.fusion import NoteFusion, ProjectionHead, TokenAttentionPool, mean_by_owner
from uninote.model.inputs import FeatureInputs
from uninote.model.towers import (LazyTower, build_image_tower, build_text_tower, known_feature_dim, normalize_pixels,
                                  run_blocks)

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
SEGMENT_GAIN = "segment_log_gain"
TEXT_POOL = "text_pool.query"
IDENTITY_AT_ZERO = (SEGMENT_GAIN, TEXT_POOL)  # weights that are the identity at zero (SFT leaves them)


def matryoshka_segments(dims: list[int], embed_dim: int) -> torch.Tensor:
    """(embed_dim,) long: the Matryoshka segment each output dim falls in (``dims`` increasing)."""
    bounds = [d for d in dims if d < embed_dim] + [embed_dim]
    sizes = torch.tensor([hi - lo for lo, hi in zip([0] + bounds[:-1], bounds)])
    return torch.repeat_interleave(torch.arange(len(bounds)), sizes)


class UniNoteModel(FeatureInputs, nn.Module):
    def __init__(self, config: UniNoteConfig | None = None):
        super().__init__()
        self.config = (config or UniNoteConfig()).validate()
        cfg = self.config
        self.text_tower = self._tower(build_text_tower, cfg.text_tower, "text")
        self.image_tower = self._tower(build_image_tower, cfg.image_tower, "image")
        torch.manual_seed(cfg.seed)
        self.text_pool = TokenAttentionPool(self.text_tower.feature_dim)
        self.text_pool.query.requires_grad_(cfg.text_pooling == "attention")  # unused (no gradient) otherwise
        self.text_head = ProjectionHead(self.text_tower.feature_dim, cfg.embed_dim, cfg.hidden_dim)
        self.image_head = ProjectionHead(self.image_feature_dim, cfg.embed_dim, cfg.hidden_dim)
        self.fusion = NoteFusion(cfg.embed_dim, cfg.hidden_dim)
        segments = matryoshka_segments(list(cfg.matryoshka_dims), cfg.embed_dim)
        self.register_buffer("segment_of_dim", segments, persistent=False)
        self.segment_log_gain = nn.Parameter(torch.zeros(int(segments[-1]) + 1))
        if cfg.freeze_backbones:
            for p in list(self.text_tower.parameters()) + list(self.image_tower.parameters()):
                p.requires_grad_(False)
            for p in self.trained_image_blocks().parameters():
                p.requires_grad_(True)
        self.eval()

    def _tower(self, build, name: str, kind: str) -> nn.Module:
        """The backbone; frozen ones with a known width are loaded lazily (see ``LazyTower``), except
        an image tower whose last blocks train (their weights are part of the checkpoint)."""
        lazy = self.config.freeze_backbones and not (kind == "image" and self.config.image_trained_blocks)
        dim = known_feature_dim(name, kind) if lazy else None
        if dim is None:
            return build(self.config)
        return LazyTower(lambda: build(self.config), dim, lambda: self.device)

    # --- bookkeeping ---------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def device(self) -> torch.device:
        return self.text_head.skip.weight.device

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_backbones:  # frozen backbones stay in eval (BatchNorm, dropout)
            self.text_tower.eval()
            self.image_tower.eval()
        return self

    def gradient_checkpointing(self, on: bool = True) -> "UniNoteModel":
        """Have the image backbone recompute its activations in the backward pass instead of keeping
        them (``towers.recomputed``): full fine-tuning in a fraction of the memory, for about one
        more forward pass of the backbone per step. Training itself is unchanged."""
        self.image_tower.gradient_checkpointing = on
        return self

    def trained_image_blocks(self) -> nn.ModuleList:
        """The image tower's blocks that train with frozen backbones (empty unless ``image_trained_blocks``)."""
        cut = self.config.image_cut
        return nn.ModuleList([] if cut is None else self.image_tower.blocks()[cut:])

    def _trained_block_keys(self) -> set[str]:
        """State-dict keys (``image_tower.…``) of the trained image blocks' parameters and buffers."""
        blocks = self.trained_image_blocks()
        owned = {id(t) for t in list(blocks.parameters()) + list(blocks.buffers())}
        named = list(self.image_tower.named_parameters()) + list(self.image_tower.named_buffers())
        return {f"image_tower.{k}" for k, t in named if id(t) in owned}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights a checkpoint stores: heads + fusion (+ the trained image blocks) when backbones
        are frozen, else everything."""
        state = self.state_dict()
        if self.config.freeze_backbones:
            trained = self._trained_block_keys()
            state = {k: v for k, v in state.items()
                     if not k.startswith(("text_tower.", "image_tower.")) or k in trained}
        return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}

    @property
    def version(self) -> str:
        """Short hash of the config and the trainable weights: names an embedding space.

        Weights still at their identity (all zero ``IDENTITY_AT_ZERO``) and the default mean text
        pooling, a frozen image tower, no colour histogram (and its scales, which then scale
        nothing), an unscaled one and a note colour scale that follows the photo's are left out, so
        checkpoints written before they existed keep their version."""
        config = self.config.to_dict()
        if config["text_pooling"] == "mean":
            del config["text_pooling"]
        if self.config.note_colour_factor == self.config.image_colour_scale or not self.config.image_colour_bins:
            del config["note_colour_scale"]  # follows the photo's, or there is no histogram to scale
        if config["image_colour_scale"] == 1 or not config["image_colour_bins"]:
            del config["image_colour_scale"]
        for name in ("image_trained_blocks", "image_colour_bins"):
            if not config[name]:
                del config[name]
        h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for k, v in sorted(self.trainable_state_dict().items()):
            if k in IDENTITY_AT_ZERO and not v.any():
                continue
            h.update(k.encode())
            h.update(v.float().numpy().tobytes())
        return h.hexdigest()[:12]

    def use_token_pooling(self) -> bool:
        """Switch to attention pooling of token states (unchanged output while ``TEXT_POOL`` is 0).

        Features must then carry token states: compute them after this call. False when the text
        backbone has none ('use-m3'), and the model keeps mean pooling."""
        if self.config.text_tower == "use-m3":
            return False
        self.config.text_pooling = "attention"
        self.text_pool.query.requires_grad_(True)
        return True

    def _text(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, F) text features of a ``forward_features`` batch, pooled as the config says."""
        dev = self.device
        if self.config.text_pooling == "mean":
            return batch["text"].to(dev, torch.float32)
        if "text_tokens" not in batch:
            raise ConfigError("this model pools token states (text_pooling='attention'), but the batch has no "
                              "'text_tokens': compute features with this model (uninote.model.features.corpus_features)")
        return self.text_pool(batch["text_tokens"].to(dev), batch["text_mask"].to(dev))

    def _gain(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (.., D) times its Matryoshka segment gains."""
        return x * self.segment_log_gain.exp()[self.segment_of_dim]

    # --- the training entry point --------------------------------------------------------------
    def forward_features(self, batch: dict[str, torch.Tensor], normalize: bool = True) -> dict[str, torch.Tensor]:
        """Embeddings of B notes from backbone features. Stable API (SFT and RL depend on it).

        ``batch``:
          ``text``        (B, F_text) pooled text features; with ``text_pooling='attention'``
                          instead ``text_tokens`` (B, T, F_text) token states and ``text_mask``
                          (B, T) bool, which this model pools
          ``has_text``    (B,) bool, optional (default all True): False for notes without text
          ``image``       (M, F_img) pooled photo features, any number of photos per note (M >= 0)
          ``image_owner`` (M,) long, the note row in [0, B) each photo belongs to
          ``region``      (M', R, F_img) region-grid features, optional; one per photo, or
                          one per photo listed in ``region_image`` (M',) when given (a subset,
                          e.g. training computes regions only for the photos a loss uses)
          ``image_map``   (M, C, h, w) instead of ``image`` and ``region``, for a model with
                          ``image_trained_blocks``: the frozen part's map per photo (the feature
                          cache's), which the trained blocks and the pooling turn into both
          ``image_colour`` (M, 1 + R, K) with ``image_map`` for a colour model: the histograms the
                          cache keeps beside the maps (``FeatureInputs.colour_of``), appended
        Returns (rows L2-normalised when ``normalize``):
          ``note`` (B, D), ``text`` (B, D), ``image`` (M, D), ``region`` (M*R, D),
          ``image_owner`` (M,), ``region_owner`` (M*R,), ``region_image`` (M*R,) the photo row
          in ``image`` each region comes from, ``has_image`` (B,) bool.
        """
        dev = self.device
        text_feats = self._text(batch)
        n = text_feats.shape[0]
        has_text = batch.get("has_text")
        has_text = torch.ones(n, dtype=torch.bool, device=dev) if has_text is None else has_text.to(dev)
        owner = batch.get("image_owner", torch.zeros(0, dtype=torch.long)).to(dev, torch.long)
        image_feats, region_feats = batch.get("image"), batch.get("region")
        if "image_map" in batch:  # maps at the first trained block: run the trained blocks, then pool
            image_feats, region_feats = self.map_features(batch["image_map"])
            if "image_colour" in batch:  # the histograms the cache keeps beside the maps
                image_feats, region_feats = self.append_colour(image_feats, region_feats, batch["image_colour"])
            if batch.get("region_image") is not None:
                region_feats = region_feats[batch["region_image"].to(region_feats.device, torch.long)]
        if image_feats is None:
            image_feats = torch.zeros(0, self.image_feature_dim)
        text = self.text_head(text_feats)
        image_feats = image_feats.to(dev, torch.float32)
        image = self.photo_head(image_feats)
        factor = self.config.note_colour_factor  # the note's photos may weight colour otherwise
        fused = image if factor == self.config.image_colour_scale else self.photo_head(image_feats, factor)
        image_mean, has_image = mean_by_owner(F.normalize(fused, dim=-1), owner, n)
        note = self.fusion(text, has_text, image_mean, has_image)
        out = {"note": note, "text": text, "image": image, "image_owner": owner, "has_image": has_image}
        if region_feats is not None and len(region_feats):
            m, r, _ = region_feats.shape
            photos = batch.get("region_image")
            photos = torch.arange(m, device=dev) if photos is None else photos.to(dev, torch.long)
            out["region"] = self.photo_head(region_feats.to(dev, torch.float32).reshape(m * r, -1))
            out["region_image"] = photos.repeat_interleave(r)
        else:
            out["region"] = image.new_zeros(0, self.embed_dim)
            out["region_image"] = torch.zeros(0, dtype=torch.long, device=dev)
        out["region_owner"] = owner[out["region_image"]]
        for k in ("note", "text", "image", "region"):
            out[k] = self._gain(out[k])
            if normalize:
                out[k] = F.normalize(out[k], dim=-1)
        return out

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Raw or feature batch -> embeddings (what DDP wraps for full fine-tuning).

        A raw batch has ``texts`` (list[str]) and ``pixels`` (M, 3, S, S) uint8 photos (as
        ``towers.load_pixels`` makes them; normalised here, on the model's device) plus
        ``image_owner`` (and optional ``has_text``); backbones run (with gradients unless frozen)
        and their features go through ``forward_features``. Any other batch goes straight there.
        """
        if "texts" not in batch:
            return self.forward_features(batch)
        feats = {k: v for k, v in batch.items() if k not in ("texts", "pixels")}
        feats.update(self.text_inputs(batch["texts"]))
        pixels = batch["pixels"].to(self.device, non_blocking=True)
        if len(pixels):
            x = normalize_pixels(pixels, self.image_tower.mean, self.image_tower.std)
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbones):
                maps = run_blocks(self.image_tower, x, 0, self.config.image_cut)
            # trained blocks (if any) get gradients; the colour histograms come from the same pixels
            feats["image"], feats["region"] = self.with_colour(pixels, *self.map_features(maps))
        return self.forward_features(feats)

    def photo_head(self, feats: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """The image head on photo or region features (.., F_img), the colour histogram at their end
        multiplied by ``scale`` first (default ``image_colour_scale``; a note's fused photos take
        ``note_colour_scale``)."""
        width, scale = self.config.colour_dim, self.config.image_colour_scale if scale is None else scale
        if width and scale != 1:
            feats = torch.cat([feats[..., :-width], feats[..., -width:] * scale], -1)
        return self.image_head(feats)

    # --- inference API ---------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_text(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """(B, D) text vectors."""
        out = self._gain(self.text_head(self._text(self.text_inputs(texts))))
        return F.normalize(out, dim=-1) if normalize else out

    @torch.inference_mode()
    def encode_image(self, images, normalize: bool = True) -> torch.Tensor:
        """(B, D) one vector per PIL image."""
        out = self._gain(self.photo_head(self.image_features(list(images))[0]))
        return F.normalize(out, dim=-1) if normalize else out

    @torch.inference_mode()
    def encode_regions(self, images, normalize: bool = True) -> torch.Tensor:
        """(B, R, D) region vectors per PIL image (R = n_regions**2 grid cells, row-major)."""
        out = self._gain(self.photo_head(self.image_features(list(images))[1]))
        return F.normalize(out, dim=-1) if normalize else out

    @torch.inference_mode()
    def encode_note(self, notes, root: str | Path | None = None, normalize: bool = True) -> torch.Tensor:
        """(B, D) fused note vectors; photo paths are resolved against ``root``."""
        return self.forward_features(self.note_batch(list(notes), root), normalize=normalize)["note"]

    @torch.inference_mode()
    def encode_query(self, note, root: str | Path | None = None):
        """Every vector of one note (or upload) as a ``QueryEmbedding`` (numpy, full dim)."""
        out = self.forward_features(self.note_batch([note], root))
        has_img = len(out["image"]) > 0
        return QueryEmbedding(
            note=out["note"][0].cpu().numpy(), text=out["text"][0].cpu().numpy(),
            images=out["image"].cpu().numpy() if has_img else None,
            regions=out["region"].cpu().numpy() if len(out["region"]) else None,
            region_image=out["region_image"].cpu().numpy() if len(out["region"]) else None)

    def embed_corpus(self, corpus, batch_size: int = 256, progress: bool = True):
        """``NoteEmbeddings`` of a whole corpus. Frozen backbones reuse the feature cache."""
        feats = corpus_features(corpus, self, progress=progress)
        return embed_from_features(self, feats, batch_size=batch_size, progress=progress)

    # --- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (trainable weights; backbones by name)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.config.save(d / CONFIG_NAME)
        save_file(self.trainable_state_dict(), str(d / WEIGHTS_NAME), metadata={"version": self.version})
        return d

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, device: str = "cpu") -> "UniNoteModel":
        """Load a checkpoint folder, or download one from the Hugging Face Hub by repo id."""
        d = Path(path_or_hub_id)
        if not d.is_dir():
            if d.exists() or str(path_or_hub_id).count("/") != 1:
                raise ConfigError(f"{path_or_hub_id}: not a checkpoint folder and not a Hub id 'owner/name'")
            d = Path(snapshot_download(repo_id=str(path_or_hub_id)))
        if not (d / CONFIG_NAME).exists() or not (d / WEIGHTS_NAME).exists():
            raise ConfigError(f"{d}: a UniNote checkpoint needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                              "(written by save_pretrained, as the train-sft command does)")
        model = cls(UniNoteConfig.load(d / CONFIG_NAME))
        state = load_file(str(d / WEIGHTS_NAME))
        for name, value in model.trainable_state_dict().items():  # older checkpoints: identity
            if name in IDENTITY_AT_ZERO:
                state.setdefault(name, value)
        expected = model.trainable_state_dict().keys()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ConfigError(f"{d / WEIGHTS_NAME}: weights do not match config.json "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.load_state_dict(state, strict=False)
        return model.to(device).eval()

    def push_to_hub(self, repo_id: str, private: bool = True, token: str | None = None) -> str:
        """Upload the checkpoint folder to the Hub; returns the commit URL."""
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return str(api.upload_folder(repo_id=repo_id, folder_path=tmp,
                                         commit_message=f"UniNote model {self.version}"))
