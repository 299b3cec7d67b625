"""A reward model for candidates nobody graded: predicts the 0-3 grade of a (query, candidate) pair.

It reads both notes' frozen reference (SFT) embeddings -- fused note, text and photo-mean vectors --
and scores the pair from symmetric interaction features

    x(a, b) = [ a_note * b_note,  |a_note - b_note|,  cos(a_note, b_note), cos(a_text, b_text),
                cos(a_img, b_img), has_img(a) * has_img(b) ]

with a small MLP and a softmax over the four grades (cross-entropy on the human grades). The
reward it hands the RL stage is the expected grade ``E[g] = sum_g g * p(g)``; human grades always
override it (``uninote.train.rewards.merge_grades``). Held-out accuracy, mean absolute error of
the expected grade, the expected calibration error (ECE, 10 confidence bins) and the majority-class
accuracy (the floor to beat) are reported on pairs of held-out *queries*.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from uninote.errors import ConfigError

N_GRADES = 4


@dataclass
class NoteReps:
    """Reference embeddings of every note the reward model may see (rows align with note ids)."""

    note: torch.Tensor  # (N, D) L2-normalised
    text: torch.Tensor  # (N, D) L2-normalised
    image: torch.Tensor  # (N, D) L2-normalised photo mean, zeros when the note has no photo
    has_image: torch.Tensor  # (N,) bool
    first_image: torch.Tensor | None = None  # (N, D) first photo's vector (image-only queries)


def pair_features(reps: NoteReps, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Interaction features (B, 2D + 4) of note rows ``a`` and ``b`` (both (B,) long)."""
    na, nb = reps.note[a], reps.note[b]
    cos = lambda x, y: (x * y).sum(-1, keepdim=True)  # noqa: E731 - rows are unit (or zero) vectors
    both = (reps.has_image[a] & reps.has_image[b]).float().unsqueeze(-1)
    return torch.cat([na * nb, (na - nb).abs(), cos(na, nb), cos(reps.text[a], reps.text[b]),
                      cos(reps.image[a], reps.image[b]) * both, both], dim=-1)


class RewardModel(nn.Module):
    def __init__(self, embed_dim: int, hidden_dim: int = 128, dropout: float = 0.1):
        super().__init__()
        self.embed_dim, self.hidden_dim = embed_dim, hidden_dim
        n_in = 2 * embed_dim + 4
        self.register_buffer("x_mean", torch.zeros(n_in))  # input standardisation, fit on training pairs
        self.register_buffer("x_std", torch.ones(n_in))
        self.net = nn.Sequential(nn.Linear(n_in, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, N_GRADES))

    def fit_standardisation(self, x: torch.Tensor) -> None:
        self.x_mean.copy_(x.mean(0))
        self.x_std.copy_(x.std(0).clamp(min=1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Grade logits (B, 4) from ``pair_features``."""
        return self.net((x - self.x_mean) / self.x_std)

    @torch.no_grad()
    def expected_grade(self, reps: NoteReps, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Predicted expected grade in [0, 3] for each pair (B,)."""
        self.eval()
        p = self(pair_features(reps, a, b)).softmax(-1)
        return p @ torch.arange(N_GRADES, dtype=p.dtype, device=p.device)

    def save(self, directory: str | Path, metrics: dict | None = None) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(d / "reward_model.safetensors"))
        (d / "reward_model.json").write_text(json.dumps(
            {"embed_dim": self.embed_dim, "hidden_dim": self.hidden_dim, "metrics": metrics or {}}, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "RewardModel":
        d = Path(directory)
        info = json.loads((d / "reward_model.json").read_text())
        model = cls(info["embed_dim"], info["hidden_dim"])
        model.load_state_dict(load_file(str(d / "reward_model.safetensors")))
        return model.eval()


@dataclass
class RewardModelConfig:
    hidden_dim: int = field(default=128, metadata={"help": "Hidden width of the reward MLP."})
    epochs: int = field(default=15, metadata={"help": "Full passes over the training grades (few: it overfits fast)."})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    batch_size: int = field(default=256, metadata={"help": "Pairs per optimisation step."})
    heldout_fraction: float = field(default=0.2, metadata={"help": (
        "Fraction of graded QUERIES held out to report accuracy/calibration (0 = train on all, no report).")})
    seed: int = field(default=0, metadata={"help": "Seed for the split and initialisation."})

    def validate(self) -> "RewardModelConfig":
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ConfigError(f"reward model heldout_fraction={self.heldout_fraction} must be in [0, 1)")
        if self.epochs < 1 or self.batch_size < 1 or self.hidden_dim < 1 or self.lr <= 0:
            raise ConfigError("reward model epochs, batch_size, hidden_dim must be >= 1 and lr > 0")
        return self


def grade_metrics(logits: torch.Tensor, grades: torch.Tensor, n_bins: int = 10) -> dict[str, float]:
    """Accuracy, MAE of the expected grade, ECE and majority-class accuracy on labelled pairs."""
    p = logits.softmax(-1)
    conf, pred = p.max(-1)
    correct = (pred == grades).float()
    expected = p @ torch.arange(N_GRADES, dtype=p.dtype)
    ece = 0.0
    edges = torch.linspace(0, 1, n_bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.float().mean().item() * abs(conf[inside].mean().item() - correct[inside].mean().item())
    majority = torch.bincount(grades, minlength=N_GRADES).max().item() / max(len(grades), 1)
    return {"accuracy": correct.mean().item(), "mae": (expected - grades.float()).abs().mean().item(),
            "ece": ece, "majority_accuracy": majority, "n": int(len(grades))}


def split_by_query(queries: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of pairs whose query falls in the held-out fraction of distinct queries."""
    uniq = np.unique(queries)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(uniq, size=int(round(fraction * len(uniq))), replace=False).tolist())
    return np.array([q in held for q in queries.tolist()], dtype=bool)


def train_reward_model(reps: NoteReps, query_rows: np.ndarray, cand_rows: np.ndarray, grades: np.ndarray,
                       config: RewardModelConfig | None = None) -> tuple[RewardModel, dict]:
    """Fit a ``RewardModel`` on graded pairs (note rows into ``reps``); returns it and its metrics.

    ``grades`` may be fractional (a mean over annotators): they are rounded to the nearest grade.
    Metrics hold ``heldout`` (on held-out queries) and ``train`` numbers.
    """
    cfg = (config or RewardModelConfig()).validate()
    torch.manual_seed(cfg.seed)
    labels = torch.as_tensor(np.clip(np.rint(grades), 0, N_GRADES - 1).astype(np.int64))
    x = pair_features(reps, torch.as_tensor(query_rows), torch.as_tensor(cand_rows)).float()
    held = torch.as_tensor(split_by_query(np.asarray(query_rows), cfg.heldout_fraction, cfg.seed))
    train_x, train_y = x[~held], labels[~held]
    model = RewardModel(reps.note.shape[1], cfg.hidden_dim)
    model.fit_standardisation(train_x)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(train_x), generator=gen)
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        metrics = {"train": grade_metrics(model(train_x), train_y), "config": asdict(cfg)}
        if held.any():
            metrics["heldout"] = grade_metrics(model(x[held]), labels[held])
    return model, metrics
