"""``UniNoteConfig``: what the model is made of. Saved as ``config.json`` beside the weights."""

from __future__ import annotations

from dataclasses import dataclass, field

from uninote import MATRYOSHKA_DIMS
from uninote.config import JsonConfig
from uninote.errors import ConfigError

BUILTIN_TEXT_TOWERS = ("minilm", "tiny", "use-m3")
BUILTIN_IMAGE_TOWERS = ("efficientnet-lite0", "tiny")
TEXT_POOLINGS = ("mean", "attention")
IMAGE_TOWER_BLOCKS = {"efficientnet-lite0": 18, "tiny": 2}  # towers that are a chain of blocks (towers.py)


@dataclass
class UniNoteConfig(JsonConfig):
    text_tower: str = field(default="minilm", metadata={"help": (
        "Text backbone: 'minilm' (bundled all-MiniLM-L6-v2, 384-d, mean pooled), 'use-m3' (bundled "
        "multilingual USE v3, numpy, always frozen, 512-d; for Chinese notes), 'tiny' (random, tests), "
        "or any Hugging Face model id / local folder loadable with AutoModel.")})
    image_tower: str = field(default="efficientnet-lite0", metadata={"help": (
        "Image backbone: 'efficientnet-lite0' (bundled ImageNet weights, 1280-d), 'tiny' (random conv, "
        "tests), or any Hugging Face vision model id / local folder (ViT-like, AutoModel).")})
    embed_dim: int = field(default=768, metadata={"help": "Dimension of the shared embedding space."})
    matryoshka_dims: list[int] = field(default_factory=lambda: list(MATRYOSHKA_DIMS), metadata={
        "help": "Prefix dims every output is trained to work at (each <= embed_dim, increasing)."})
    n_regions: int = field(default=3, metadata={"help": (
        "Region grid side: the last image feature map is adaptive-avg-pooled to n x n local vectors.")})
    image_size: int = field(default=224, metadata={"help": "Square input size photos are resized to."})
    max_text_tokens: int = field(default=128, metadata={"help": "Text truncation length in tokens."})
    text_pooling: str = field(default="mean", metadata={"help": (
        "How a text's token states become one feature: 'mean' (the backbone's masked mean) or "
        "'attention' (softmax over tokens by a learned query, which starts at mean pooling; the RL "
        "stage switches it on and trains the query). 'use-m3' has no token states: 'mean' only.")})
    hidden_dim: int = field(default=1024, metadata={"help": "Hidden width of the projection heads."})
    freeze_backbones: bool = field(default=True, metadata={"help": (
        "Keep the backbones fixed (only heads and fusion train; checkpoints store trainable weights "
        "only and reference backbones by name). False = full fine-tuning.")})
    image_trained_blocks: int = field(default=0, metadata={"help": (
        "Last blocks of the image backbone that train with frozen backbones (0 = none, the frozen "
        "tower). EfficientNet-Lite0 is 18 blocks: stem, 16 MBConv blocks, head conv; 1 = the head "
        "conv (320 -> 1280, 1x1), 2 = also the last MBConv block (192 -> 320 at 7x7), and so on. "
        "The feature cache then keeps the feature map at the first trained block's input, and "
        "checkpoints store those blocks beside the heads. --full-finetune trains every block instead.")})
    image_colour_bins: int = field(default=0, metadata={"help": (
        "Append a colour histogram of the photo (and of each region cell) to its backbone features: "
        "bins per RGB channel, so bins**3 values (near-white background left out; see "
        "towers.colour_histograms). 0 = off. ImageNet backbones are trained with colour jitter and "
        "keep little of a photo's colour, which catalogue relevance depends on.")})
    image_colour_scale: float = field(default=1.0, metadata={"help": (
        "Factor on the colour histogram where it enters the image head. Its values are square-rooted "
        "shares of unit length, about 15x smaller per dimension than the backbone's pooled features, "
        "so the head's LayerNorm all but drowns them at 1.")})
    note_colour_scale: float | None = field(default=None, metadata={"help": (
        "The same factor for the photos a note vector fuses (None = image_colour_scale). Photo and "
        "region vectors, which photo queries are ranked by, can then weight colour more than the "
        "note vector does, whose text names the colour already.")})
    tiny_width: int = field(default=32, metadata={"help": "Feature width of the 'tiny' test towers."})
    seed: int = field(default=0, metadata={"help": "Seed for head initialisation (and tiny towers)."})

    def validate(self) -> "UniNoteConfig":
        if not self.text_tower or not self.image_tower:
            raise ConfigError("text_tower and image_tower must be non-empty: use 'minilm' / "
                              "'efficientnet-lite0', 'tiny', or a Hugging Face id or folder")
        if self.embed_dim < 8:
            raise ConfigError(f"embed_dim={self.embed_dim} is too small; use at least 8 (default 768)")
        dims = list(self.matryoshka_dims)
        if not dims or dims != sorted(set(dims)) or dims[0] < 1 or dims[-1] > self.embed_dim:
            raise ConfigError(f"matryoshka_dims={dims} must be strictly increasing values in "
                              f"[1, embed_dim={self.embed_dim}], e.g. {list(MATRYOSHKA_DIMS)}")
        if self.n_regions < 1:
            raise ConfigError(f"n_regions={self.n_regions}: the region grid side must be >= 1 (default 3)")
        if self.image_size < 32:
            raise ConfigError(f"image_size={self.image_size} is too small; use >= 32 (default 224)")
        if self.max_text_tokens < 4 or self.hidden_dim < 1 or self.tiny_width < 4:
            raise ConfigError("max_text_tokens >= 4, hidden_dim >= 1 and tiny_width >= 4 are required")
        if self.text_tower == "use-m3" and not self.freeze_backbones:
            raise ConfigError("text_tower='use-m3' is a numpy model and cannot be fine-tuned: "
                              "keep freeze_backbones=True or pick a Hugging Face text backbone")
        if self.image_trained_blocks < 0:
            raise ConfigError(f"image_trained_blocks={self.image_trained_blocks} must be >= 0 (0 = frozen tower)")
        if self.image_trained_blocks:
            blocks = IMAGE_TOWER_BLOCKS.get(self.image_tower)
            if blocks is None:
                raise ConfigError(f"image_trained_blocks={self.image_trained_blocks} needs an image tower made of "
                                  f"blocks ({', '.join(IMAGE_TOWER_BLOCKS)}), not {self.image_tower!r}: set it to 0")
            if not 0 < self.image_trained_blocks < blocks:
                raise ConfigError(f"image_trained_blocks={self.image_trained_blocks} must be in [0, {blocks - 1}] "
                                  f"for {self.image_tower!r} ({blocks} blocks; train them all with full fine-tuning)")
            if not self.freeze_backbones:
                raise ConfigError("image_trained_blocks applies to frozen backbones; full fine-tuning "
                                  "(freeze_backbones=False) trains every block already: set it to 0")
        if self.image_colour_bins and not 2 <= self.image_colour_bins <= 16:
            raise ConfigError(f"image_colour_bins={self.image_colour_bins} must be 0 (off) or in [2, 16] "
                              "(bins per RGB channel; 8 gives 512 values)")
        for name in ("image_colour_scale", "note_colour_scale"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}={value} must be > 0")
        if self.text_pooling not in TEXT_POOLINGS:
            raise ConfigError(f"text_pooling={self.text_pooling!r} must be one of {TEXT_POOLINGS}")
        if self.text_pooling == "attention" and self.text_tower == "use-m3":
            raise ConfigError("text_pooling='attention' needs token states, which 'use-m3' does not give: "
                              "use text_pooling='mean' or a Hugging Face text backbone")
        return self

    @property
    def n_region_cells(self) -> int:
        return self.n_regions * self.n_regions

    @property
    def colour_dim(self) -> int:
        """Width of the colour histogram appended to every photo and region feature (0 = none)."""
        return self.image_colour_bins ** 3 if self.image_colour_bins else 0

    @property
    def note_colour_factor(self) -> float:
        """The colour factor the photos a note fuses take: ``note_colour_scale``, or the photo's."""
        return self.image_colour_scale if self.note_colour_scale is None else self.note_colour_scale

    @property
    def image_cut(self) -> int | None:
        """Index of the first trained image block, None when the image tower is frozen whole."""
        if not self.image_trained_blocks:
            return None
        return IMAGE_TOWER_BLOCKS[self.image_tower] - self.image_trained_blocks
