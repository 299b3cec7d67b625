"""``SFTConfig``: every knob of stage-1 contrastive SFT, with help; defaults = recommended run."""

from __future__ import annotations

from dataclasses import dataclass, field

from uninote import MATRYOSHKA_DIMS
from uninote.config import DEVICES, RUNTIMES, JsonConfig
from uninote.errors import ConfigError
from uninote.model.config import UniNoteConfig

LOSS_TERMS = ("note", "image_note", "text_note", "image_text", "image_image", "region", "image_note_kd",
              "image_image_kd")


@dataclass
class SFTConfig(JsonConfig):
    # model (passed to UniNoteConfig)
    text_tower: str = field(default="minilm", metadata={"help": "Text backbone (see UniNoteConfig)."})
    image_tower: str = field(default="efficientnet-lite0", metadata={"help": "Image backbone (see UniNoteConfig)."})
    embed_dim: int = field(default=768, metadata={"help": "Shared embedding dim."})
    image_size: int = field(default=224, metadata={"help": "Photo input size in pixels."})
    n_regions: int = field(default=3, metadata={"help": "Region grid side (n x n local vectors per photo)."})
    hidden_dim: int = field(default=512, metadata={"help": "Hidden width of heads and fusion."})
    image_trained_blocks: int = field(default=0, metadata={"help": (
        "Last blocks of the image backbone trained with the heads on the CPU path (0 = frozen tower). "
        "EfficientNet-Lite0: 1 = its head conv, 2 = also the last MBConv block (see UniNoteConfig). "
        "Their input feature maps are cached once per corpus (float16); --full-finetune trains every "
        "block instead and needs 0 here.")})
    image_colour_bins: int = field(default=8, metadata={"help": (
        "Colour histogram (bins per RGB channel, bins**3 values) appended to every photo and region "
        "feature (0 = off; see UniNoteConfig). With --image-trained-blocks the cache keeps the "
        "histograms beside the maps.")})
    image_colour_scale: float = field(default=4.0, metadata={"help": (
        "Factor on the colour histogram where it enters the image head for photo and region vectors "
        "(see UniNoteConfig; docs/results/model.md).")})
    note_colour_scale: float | None = field(default=1.0, metadata={"help": (
        "The same factor for the photos a note vector fuses (see UniNoteConfig). 4 for photo vectors "
        "and 1 here lifts photo queries without moving note and text queries (docs/results/model.md).")})
    # objective
    matryoshka: bool = field(default=True, metadata={"help": "Wrap the objective in the Matryoshka loss."})
    matryoshka_dims: list[int] = field(default_factory=lambda: list(MATRYOSHKA_DIMS), metadata={
        "help": "Prefix dims trained (and the model's matryoshka_dims)."})
    matryoshka_weights: list[float] | None = field(default=None, metadata={
        "help": "One weight per Matryoshka dim (default all 1)."})
    temperature: float = field(default=0.05, metadata={"help": "InfoNCE temperature tau."})
    hard_negatives: int = field(default=2, metadata={"help": "Hard negatives per pair taken from pairs.jsonl."})
    loss_weights: dict[str, float] = field(default_factory=lambda: {
        "note": 1.0, "image_note": 0.5, "text_note": 1.0, "image_text": 0.5, "image_image": 0.5,
        "region": 0.25, "image_note_kd": 3.0, "image_image_kd": 3.0},
        metadata={"help": f"Weight per training signal (uninote/train/sft_objective.py; the _kd ones distil "
                         f"the note's ranking into the photo); keys {LOSS_TERMS}."})
    region_pairs: int = field(default=64, metadata={"help": (
        "Pairs per batch whose photo regions enter the region loss (its cost grows with the square).")})
    mask_grade: int = field(default=3, metadata={"help": (
        "In-batch candidates whose qrels grade to the query is >= this are not used as negatives "
        "(they are relevant); set above 3 to disable.")})
    # optimisation
    epochs: int = field(default=8, metadata={"help": "Passes over the training pairs."})
    batch_size: int = field(default=256, metadata={"help": "Pairs per step (per process under DDP)."})
    lr: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate (heads); backbones get lr * backbone_lr_scale."})
    backbone_lr_scale: float = field(default=0.02, metadata={"help": "Backbone LR multiplier for --full-finetune."})
    map_crop: int = field(default=0, metadata={"help": (
        "With --image-trained-blocks: train each photo on a random map_crop x map_crop window of its "
        "cached feature map (0 = the whole map). A crop of the photo's view that keeps its grade, "
        "and fewer positions through the trained blocks; serving always sees the whole map.")})
    image_blocks_lr_scale: float = field(default=0.1, metadata={"help": (
        "LR multiplier for the trained image blocks of --image-trained-blocks (lr * this).")})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of steps with linear LR warm-up (then cosine)."})
    grad_clip: float = field(default=1.0, metadata={"help": "Gradient norm clip (0 = off)."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many steps (overrides epochs)."})
    # paths / modes
    full_finetune: bool = field(default=False, metadata={"help": (
        "Train the backbones too (GPU, bf16 autocast, DDP under torchrun); default trains heads on cached features.")})
    gradient_checkpointing: bool = field(default=False, metadata={"help": (
        "With --full-finetune: keep only each image backbone block's input and recompute its "
        "activations in the backward pass. EfficientNet-Lite0 keeps about 90 MB per 224 px photo of a "
        "float32 step otherwise (a step holds its pairs' and hard negatives' photos), so this is what lets a "
        "full batch fit in a small GPU or in CPU memory, for about a third more compute; the training "
        "is the same.")})
    num_workers: int = field(default=4, metadata={"help": (
        "DataLoader worker processes decoding photos for --full-finetune (0 = in the main process).")})
    device: str = field(default="auto", metadata={"help": (
        "'auto' (CUDA for --full-finetune when one is visible, else CPU), 'cpu' or 'cuda'; under "
        "torchrun each rank takes GPU LOCAL_RANK.")})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast on CUDA for --full-finetune."})
    seed: int = field(default=0, metadata={"help": "Seed for initialisation and batch order."})
    threads: int = field(default=1, metadata={"help": (
        "torch CPU threads for the training steps.")})
    feature_threads: int = field(default=2, metadata={"help": (
        "torch (and ONNX Runtime) CPU threads for backbone feature extraction.")})
    runtime: str = field(default="auto", metadata={"help": (
        "What runs the frozen backbones for feature extraction: 'onnx' (ONNX Runtime, CPU), 'torch', "
        "'auto' (ONNX Runtime on CPU, torch on CUDA), or 'onnx-int8' (INT8-quantised towers, opt-in).")})
    log_every: int = field(default=10, metadata={"help": "Log the loss every N steps."})

    def validate(self) -> "SFTConfig":
        unknown = sorted(set(self.loss_weights) - set(LOSS_TERMS))
        if unknown:
            raise ConfigError(f"unknown loss_weights keys {unknown}; use {LOSS_TERMS}")
        if self.temperature <= 0 or self.batch_size < 2 or self.epochs < 1 or self.lr <= 0:
            raise ConfigError("temperature > 0, batch_size >= 2, epochs >= 1 and lr > 0 are required")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps={self.max_steps}: give a positive number or leave it unset")
        if self.matryoshka_weights is not None and len(self.matryoshka_weights) != len(self.matryoshka_dims):
            raise ConfigError(f"{len(self.matryoshka_weights)} matryoshka_weights for "
                              f"{len(self.matryoshka_dims)} matryoshka_dims: give one weight per dim")
        if self.device not in DEVICES:
            raise ConfigError(f"device={self.device!r}: use one of {DEVICES}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime={self.runtime!r}: use one of {RUNTIMES}")
        if self.hard_negatives < 0 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("hard_negatives >= 0 and 0 <= warmup_ratio < 1 are required")
        if self.gradient_checkpointing and not self.full_finetune:
            raise ConfigError("gradient_checkpointing recomputes the backbone in the backward pass of "
                              "--full-finetune; frozen backbones (the default) keep no activations of it")
        if self.map_crop < 0 or (self.map_crop and not self.image_trained_blocks):
            raise ConfigError(f"map_crop={self.map_crop}: crops of cached maps need --image-trained-blocks >= 1 "
                              "(and a size >= 1); 0 trains on whole maps")
        self.model_config()
        return self

    def model_config(self) -> UniNoteConfig:
        """The ``UniNoteConfig`` this run trains (validated)."""
        return UniNoteConfig(text_tower=self.text_tower, image_tower=self.image_tower, embed_dim=self.embed_dim,
                             matryoshka_dims=list(self.matryoshka_dims), n_regions=self.n_regions,
                             image_size=self.image_size, hidden_dim=self.hidden_dim,
                             freeze_backbones=not self.full_finetune, image_trained_blocks=self.image_trained_blocks,
                             image_colour_bins=self.image_colour_bins, image_colour_scale=self.image_colour_scale,
                             note_colour_scale=self.note_colour_scale,
                             seed=self.seed).validate()
