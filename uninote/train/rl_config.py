"""``RLConfig``: every knob of the RL stage, with help per field and one ``validate()``.

Defaults are the recommended settings (docs/results/rl.md measures them). The resolved config is
written next to every checkpoint (``training_config.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from uninote.config import DEVICES, JsonConfig
from uninote.errors import ConfigError
from uninote.train.advantages import SCALES
from uninote.train.rewards import REWARD_FUNCTIONS

UNGRADED_POLICIES = ("auto", "reward_model", "zero", "drop")


@dataclass
class RLConfig(JsonConfig):
    steps: int = field(default=600, metadata={"help": (
        "Optimisation steps (one batch of queries each).")})
    queries_per_step: int = field(default=16, metadata={"help": "Queries per step (the batch)."})
    group_size: int = field(default=8, metadata={"help": (
        "G: rankings sampled per query and dim; advantages are normalised within this group.")})
    rank_k: int = field(default=10, metadata={"help": "k of the sampled top-k rankings and of the NDCG@k reward."})
    pool_size: int = field(default=32, metadata={"help": (
        "Candidates per query: its graded candidates plus the policy's own current top neighbours.")})
    policy_topk: int = field(default=24, metadata={"help": (
        "How many of the model's current nearest neighbours may fill each pool after its graded candidates.")})
    refresh_every: int = field(default=50, metadata={"help": (
        "Steps between re-embedding the training corpus to refresh each query's current top neighbours.")})
    temperature: float = field(default=0.02, metadata={"help": (
        "tau in softmax(sim / tau): the sharpness of the ranking policy (and of the ListNet and anchor "
        "softmaxes); smaller is sharper.")})
    kl_coef: float = field(default=0.5, metadata={"help": "beta: weight of the KL penalty to the frozen SFT reference."})
    kl_estimator: str = field(default="listwise", metadata={"help": (
        "'listwise' (exact KL of the first-choice softmax over the pool) or 'k3' (sampled estimator).")})
    listwise_coef: float = field(default=1.0, metadata={"help": (
        "Weight of a ListNet term (softmax of the pool vs the grades' gain distribution) added to the "
        "policy gradient: a sampling-free, low-variance use of every grade (0 = pure GRPO).")})
    listwise_power: float = field(default=2.0, metadata={"help": (
        "Exponent on the ListNet target's gains (2^g - 1)^p: above 1 the target is sharper, so the "
        "loss asks for larger margins between grades instead of matching the gain ratios; 1 = plain ListNet.")})
    anchor_coef: float = field(default=0.5, metadata={"help": (
        "Weight of a listwise KL to the SFT scoring on random corpus notes (each against its SFT top "
        "neighbours, at the prefixes anchor_dims names): keeps the whole space, not just graded pools, close "
        "to SFT (0 = off). The weight holds for anchor_ref_pairs graded pairs or more; fewer pairs scale it up.")})
    anchor_ref_pairs: int = field(default=2000, metadata={"help": (
        "The anchor weighs anchor_coef * max(1, anchor_ref_pairs / graded pairs): the anchor is a prior and "
        "the RL loss an average over the grades, so with fewer grades the prior counts for more and notes no "
        "grade reaches stay nearer SFT. 0 = always anchor_coef.")})
    anchor_queries: int = field(default=32, metadata={"help": "Random corpus notes per step for anchor_coef."})
    anchor_dims: str = field(default="all", metadata={"help": (
        "Prefixes the corpus anchor holds near SFT: 'all' (every RL dim, weighted like the RL loss) or "
        "'full' (the full dim only).")})
    reward: str = field(default="ndcg", metadata={"help": f"Reward function: one of {sorted(REWARD_FUNCTIONS)}."})
    advantage_scale: str = field(default="batch", metadata={"help": (
        f"Advantage normalisation: one of {SCALES}. 'group' = GRPO (divide by each group's std); 'batch' "
        "divides by the batch std, so near-constant groups are not blown up into noise; 'none' only centres.")})
    ungraded: str = field(default="reward_model", metadata={"help": (
        "Reward of pool candidates nobody graded: 'reward_model' (its expected grade), 'zero', "
        "'drop' (pools hold graded candidates only), or 'auto': the reward model when its held-out "
        "accuracy beats the majority-class floor by rm_min_margin, else 'drop'.")})
    rm_min_margin: float = field(default=0.05, metadata={"help": (
        "For ungraded='auto' only: held-out accuracy minus majority-class accuracy the reward model needs "
        "to be used.")})
    rm_queries: bool = field(default=True, metadata={"help": (
        "With the reward model, also use ungraded training notes as queries (their pools are scored by "
        "the reward model only). Human-graded queries are always used.")})
    rm_query_fraction: float = field(default=0.5, metadata={"help": (
        "Share of each batch drawn from ungraded queries when rm_queries is on.")})
    query_modalities: list[str] = field(default_factory=lambda: ["note", "image"], metadata={"help": (
        "Query sides trained against the note index: 'note' (fused vector), 'image' (the first photo, "
        "what an image-only query uses) and 'text' (the note's text alone, what a typed query uses). Same "
        "grades and pools; losses averaged over sides.")})
    frozen_modules: list[str] = field(default_factory=lambda: ["image_head"], metadata={"help": (
        "Model parts RL leaves at their SFT weights (names: text_head, image_head, fusion). Freezing "
        "image_head keeps the photo vectors, and so image-only queries, at SFT.")})
    matryoshka_dims: list[int] | None = field(default=None, metadata={"help": (
        "Prefix dims to apply RL at (default: the model's matryoshka_dims).")})
    matryoshka_weights: list[float] | None = field(default=None, metadata={"help": (
        "Weight of each dim's loss (default: equal). Same length as matryoshka_dims.")})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate for heads and fusion."})
    segment_gain_lr: float = field(default=1e-2, metadata={"help": (
        "AdamW learning rate of the model's Matryoshka segment gains (one log-gain per segment of "
        "dims, applied to every output before it is normalised; SFT leaves them at 1). They set how "
        "much a prefix's later dims weigh against its first ones, and need a far larger rate than "
        "the heads to move in one run. 0 keeps them fixed at 1.")})
    text_pool_lr: float = field(default=1e-3, metadata={"help": (
        "AdamW learning rate of the text pooling query: RL switches the model to attention pooling of "
        "the text backbone's token states (which starts as its mean pooling) and learns which tokens "
        "weigh more. 0 keeps mean pooling; towers without token states ('use-m3') always do.")})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 = off)."})
    seed: int = field(default=0, metadata={"help": "Seed for query sampling, rankings and the reward model."})
    device: str = field(default="auto", metadata={"help": "'auto' (cuda if available), 'cpu' or 'cuda'."})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast on CUDA (ignored on CPU)."})
    save_every: int = field(default=100, metadata={"help": "Steps between resumable checkpoints (0 = only at the end)."})
    log_every: int = field(default=10, metadata={"help": "Steps between progress reports."})
    rm_hidden_dim: int = field(default=128, metadata={"help": "Reward model hidden width."})
    rm_epochs: int = field(default=15, metadata={"help": "Reward model training epochs."})
    rm_heldout_fraction: float = field(default=0.2, metadata={"help": (
        "Share of graded queries held out to report reward-model accuracy and calibration.")})

    def validate(self) -> "RLConfig":
        ints = {"steps": 1, "queries_per_step": 1, "group_size": 2, "rank_k": 1, "pool_size": 2,
                "policy_topk": 0, "refresh_every": 1, "log_every": 1, "rm_hidden_dim": 1, "rm_epochs": 1,
                "save_every": 0}
        for name, low in ints.items():
            if int(getattr(self, name)) < low:
                raise ConfigError(f"RLConfig.{name}={getattr(self, name)} must be >= {low}")
        if self.temperature <= 0 or self.learning_rate <= 0 or self.kl_coef < 0 or self.max_grad_norm < 0:
            raise ConfigError("RLConfig: temperature and learning_rate must be > 0, kl_coef and max_grad_norm >= 0")
        if self.text_pool_lr < 0:
            raise ConfigError(f"RLConfig.text_pool_lr={self.text_pool_lr} must be >= 0 (0 = mean pooling)")
        if self.segment_gain_lr < 0:
            raise ConfigError(f"RLConfig.segment_gain_lr={self.segment_gain_lr} must be >= 0 (0 = gains fixed)")
        if self.anchor_ref_pairs < 0:
            raise ConfigError(f"RLConfig.anchor_ref_pairs={self.anchor_ref_pairs}: give a pair count, or 0 for off")
        if self.listwise_coef < 0 or self.anchor_coef < 0 or self.anchor_queries < 1 or self.listwise_power <= 0:
            raise ConfigError("RLConfig: listwise_coef and anchor_coef must be >= 0, anchor_queries >= 1, listwise_power > 0")
        choices = {"kl_estimator": ("listwise", "k3"), "anchor_dims": ("full", "all"), "reward": tuple(REWARD_FUNCTIONS),
                   "advantage_scale": SCALES, "ungraded": UNGRADED_POLICIES, "device": DEVICES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"RLConfig.{name}={getattr(self, name)!r}; expected one of {list(allowed)}")
        if not 0.0 <= self.rm_query_fraction < 1.0 or not 0.0 <= self.rm_heldout_fraction < 1.0:
            raise ConfigError("RLConfig: rm_query_fraction and rm_heldout_fraction must be in [0, 1)")
        mods = list(self.query_modalities)
        if len(set(mods)) != len(mods) or not set(mods) <= {"note", "image", "text"} or "note" not in mods:
            raise ConfigError(f"RLConfig.query_modalities={mods}: 'note' plus any of 'image', 'text', once each")
        unknown = set(self.frozen_modules) - {"text_head", "image_head", "fusion"}
        if unknown or len(set(self.frozen_modules)) >= 3:
            raise ConfigError(f"RLConfig.frozen_modules={self.frozen_modules}: pick at most two of "
                              "text_head, image_head, fusion")
        if self.matryoshka_dims is not None:
            dims = list(self.matryoshka_dims)
            if not dims or dims != sorted(set(dims)) or dims[0] < 1:
                raise ConfigError(f"RLConfig.matryoshka_dims={dims} must be strictly increasing positive ints")
        if self.matryoshka_weights is not None:
            if self.matryoshka_dims is None or len(self.matryoshka_weights) != len(self.matryoshka_dims):
                raise ConfigError("RLConfig.matryoshka_weights needs matryoshka_dims of the same length")
            if any(w < 0 for w in self.matryoshka_weights) or sum(self.matryoshka_weights) <= 0:
                raise ConfigError("RLConfig.matryoshka_weights must be >= 0 with a positive sum")
        return self
