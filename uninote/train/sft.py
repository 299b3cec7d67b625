"""Stage-1 contrastive SFT.

Two paths, one ``SFTConfig``:
- frozen backbones (default, CPU): backbone features are extracted once per corpus and cached
  (``uninote.train.features``); each step runs heads + fusion on the cached features of the
  batch's notes (``UniNoteModel.forward_features``);
- ``full_finetune``: texts and photos go through the backbones every step (``UniNoteModel.forward``),
  bf16 autocast on CUDA, DistributedDataParallel when launched with ``torchrun`` (NCCL on GPU,
  gloo on CPU): each rank takes its share of every global batch, gradients are all-reduced, rank 0
  writes the checkpoint.

Each step encodes the batch once; the Matryoshka loss slices that one output per dim.
Outputs beside the checkpoint: ``training_config.json`` and ``metrics.json``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import resource
import time
from pathlib import Path

import numpy as np
import torch

from uninote.losses import MatryoshkaLoss
from uninote.model import UniNoteModel
from uninote.train.sft_config import SFTConfig
from uninote.train.sft_data import add_region_index, batch_order, pair_index, pair_table
from uninote.train.sft_objective import SFTObjective, first_rows

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_loss(cfg: SFTConfig) -> torch.nn.Module:
    """The objective, wrapped in the Matryoshka loss unless ``cfg.matryoshka`` is off."""
    objective = SFTObjective(cfg.loss_weights, cfg.temperature)
    if not cfg.matryoshka:
        return objective
    return MatryoshkaLoss(objective, cfg.matryoshka_dims, cfg.matryoshka_weights, full_dim=cfg.embed_dim)


def lr_lambda(total: int, warmup_ratio: float):
    warm = max(1, int(total * warmup_ratio))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return f


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class FeatureBatches:
    """Cached-feature batches: (forward_features input, objective index) per step."""

    def __init__(self, feats, table, n_cells: int, region_pairs: int | None = None):
        self.feats, self.table, self.n_cells, self.region_pairs = feats, table, n_cells, region_pairs

    def __call__(self, pairs: np.ndarray):
        union, idx = pair_index(self.table, pairs)
        batch = self.feats.batch(union)
        photos = add_region_index(idx, batch["image_owner"], len(union), self.n_cells, self.region_pairs)
        batch["region"], batch["region_image"] = batch["region"][photos], photos
        return batch, idx


class RawBatches:
    """Raw batches for full fine-tuning: texts and preprocessed pixels of the batch's notes.

    Holds no model (only sizes and normalisation), so DataLoader workers can build batches.
    """

    def __init__(self, corpus, table, model: UniNoteModel):
        tower, cfg = model.image_tower, model.config
        self.corpus, self.table = corpus, table
        self.size, self.n_cells = cfg.image_size, cfg.n_region_cells
        self.mean, self.std = tuple(tower.mean), tuple(tower.std)

    def __call__(self, pairs: np.ndarray):
        from uninote.model.images_io import open_image
        from uninote.model.towers import preprocess_images

        union, idx = pair_index(self.table, pairs)
        notes = [self.corpus.notes[int(r)] for r in union]
        images, owner = [], []
        for i, note in enumerate(notes):
            for j in range(len(note.images)):
                try:
                    images.append(open_image(self.corpus.image_path(note, j)))
                    owner.append(i)
                except (OSError, ValueError):
                    continue  # counted by the feature pass; a broken photo is just left out here
        pixels = preprocess_images(images, self.size, self.mean, self.std) if images else \
            torch.zeros(0, 3, self.size, self.size)
        owner_t = torch.tensor(owner, dtype=torch.long)
        first = first_rows(owner_t, len(union))  # regions are computed for every photo here
        idx["region_q"] = region_rows(first[idx["q"]], self.n_cells)
        idx["region_p"] = region_rows(first[idx["p"]], self.n_cells)
        texts = [n.text() for n in notes]
        return {"texts": texts, "has_text": torch.tensor([bool(t.strip()) for t in texts]),
                "pixels": pixels, "image_owner": owner_t}, idx


class StepBatches(torch.utils.data.Dataset):
    """Step i -> (batch, index); with ``num_workers`` a DataLoader prepares batches ahead."""

    def __init__(self, steps, make_batch):
        self.steps, self.make_batch = steps, make_batch

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int):
        return self.make_batch(self.steps[i])


def region_rows(photo_rows: torch.Tensor, n_cells: int) -> torch.Tensor:
    """(B, R) rows of the region output for photos whose regions all were computed (-1 = none)."""
    cells = torch.arange(n_cells)
    return torch.where(photo_rows[:, None] >= 0, photo_rows[:, None] * n_cells + cells, torch.full_like(cells, -1))


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 or "LOCAL_RANK" in os.environ:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train_sft(corpus, out_dir: str | Path, cfg: SFTConfig, progress: bool = True) -> tuple[UniNoteModel, dict]:
    """Train stage-1 SFT on ``corpus`` and write the checkpoint to ``out_dir``; returns (model, metrics)."""
    from tqdm.auto import tqdm

    cfg.validate()
    seed_everything(cfg.seed)
    start = time.perf_counter()
    rank, world = _distributed() if cfg.full_finetune else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available()
                          and cfg.full_finetune else "cpu")
    model = UniNoteModel(cfg.model_config()).to(device)
    table = pair_table(corpus, cfg.hard_negatives, cfg.mask_grade)
    feature_seconds = 0.0
    if cfg.full_finetune:
        batches = RawBatches(corpus, table, model)
    else:
        from uninote.train.features import corpus_features

        t0 = time.perf_counter()
        torch.set_num_threads(cfg.feature_threads)
        feats = corpus_features(corpus, model, progress=progress)
        feature_seconds = time.perf_counter() - t0
        batches = FeatureBatches(feats, table, model.config.n_region_cells, cfg.region_pairs)
    torch.set_num_threads(cfg.threads)
    steps = batch_order(len(table.q), cfg.batch_size, cfg.epochs, cfg.seed, rank, world)[: cfg.max_steps]
    loss_fn = build_loss(cfg)
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("text_tower", "image_tower"))]
    tower_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(("text_tower", "image_tower"))]
    groups = [{"params": head_params, "lr": cfg.lr}]
    if tower_params:
        groups.append({"params": tower_params, "lr": cfg.lr * cfg.backbone_lr_scale})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(len(steps), cfg.warmup_ratio))
    runner = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        runner = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda")
    curve, terms = [], []
    model.train()
    workers = cfg.num_workers if cfg.full_finetune else 0
    loader = torch.utils.data.DataLoader(StepBatches(steps, batches), batch_size=None, shuffle=False,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         prefetch_factor=4 if workers else None)
    bar = tqdm(loader, desc="sft", disable=not progress or rank != 0)
    t_train = time.perf_counter()
    for step, (batch, idx) in enumerate(bar):
        idx = {k: v.to(device) for k, v in idx.items()}
        with autocast:
            out = runner(batch)  # one forward pass; Matryoshka slices it
            loss = loss_fn({k: v.float() if v.is_floating_point() else v for k, v in out.items()}, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(head_params + tower_params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        curve.append(round(float(loss.detach()), 5))
        if step % cfg.log_every == 0 or step == len(steps) - 1:
            objective = loss_fn.base_loss if isinstance(loss_fn, MatryoshkaLoss) else loss_fn
            terms.append({"step": step, **{k: round(v, 4) for k, v in objective.last_terms.items()}})
            bar.set_postfix(loss=f"{curve[-1]:.3f}")
    model.eval()
    metrics = {"steps": len(steps), "loss_curve": curve, "loss_terms": terms,
               "feature_seconds": round(feature_seconds, 2),
               "train_seconds": round(time.perf_counter() - t_train, 2),
               "wall_seconds": round(time.perf_counter() - start, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
               "n_pairs": int(len(table.q)), "world_size": world, "device": str(device),
               "trainable_parameters": int(sum(p.numel() for p in head_params + tower_params))}
    if rank == 0:
        out = Path(out_dir)
        model.save_pretrained(out)
        metrics["version"] = model.version
        cfg.save(out / "training_config.json", corpus=str(corpus.root), corpus_name=corpus.name)
        import json

        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return model, metrics
