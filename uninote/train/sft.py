"""Stage-1 contrastive SFT.

Two paths, one ``SFTConfig``:
- frozen backbones (default, CPU): backbone features are extracted once per corpus and cached
  (``uninote.model.features``); each step runs heads + fusion on the cached features of the
  batch's notes (``UniNoteModel.forward_features``). With ``image_trained_blocks`` the cache
  holds the feature maps at the first trained image block instead, and each step runs those
  blocks (with gradients) before the heads;
- ``full_finetune``: texts and photos go through the backbones every step (``UniNoteModel.forward``),
  bf16 autocast on CUDA, DistributedDataParallel when launched with ``torchrun`` (NCCL on GPU,
  gloo on CPU): each rank takes its share of every global batch, gradients are all-reduced, rank 0
  writes the checkpoint.

Each step encodes the batch once; the Matryoshka loss slices that one output per dim.
Outputs beside the checkpoint: ``training_config.json`` and ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import math
import random
import resource
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from uninote.data.images import load_image
from uninote.losses import MatryoshkaLoss
from uninote.model import UniNoteModel
from uninote.model.features import corpus_features
from uninote.model.towers import load_pixels
from uninote.model.uninote import IDENTITY_AT_ZERO
from uninote.train.devices import init_distributed, resolve_device
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


def random_crops(maps: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """(M, C, h, w) maps -> (M, C, size, size): one random window per map (the whole map when it is
    not larger than ``size``)."""
    m, _, h, w = maps.shape
    if size >= h and size >= w:
        return maps
    size_h, size_w = min(size, h), min(size, w)
    top = torch.randint(0, h - size_h + 1, (m,), generator=generator)
    left = torch.randint(0, w - size_w + 1, (m,), generator=generator)
    windows = maps.unfold(2, size_h, 1).unfold(3, size_w, 1)  # (M, C, h', w', size_h, size_w)
    return windows[torch.arange(m), :, top, left].contiguous()


class FeatureBatches:
    """Cached-feature batches: (forward_features input, objective index) per step. With ``map_crop``
    each cached map is cut to a random window (seeded); colour histograms kept beside the maps stay
    the whole photo's and its cells'."""

    def __init__(self, feats, table, n_cells: int, region_pairs: int | None = None, map_crop: int = 0,
                 seed: int = 0):
        self.feats, self.table, self.n_cells, self.region_pairs = feats, table, n_cells, region_pairs
        self.map_crop, self.generator = map_crop, torch.Generator().manual_seed(seed)

    def __call__(self, pairs: np.ndarray):
        union, idx = pair_index(self.table, pairs)
        batch = self.feats.batch(union)
        photos = add_region_index(idx, batch["image_owner"], len(union), self.n_cells, self.region_pairs)
        if "region" in batch:  # maps: the model pools every photo's regions and keeps these
            batch["region"] = batch["region"][photos]
        if self.map_crop and "image_map" in batch:
            batch["image_map"] = random_crops(batch["image_map"], self.map_crop, self.generator)
        batch["region_image"] = photos
        return batch, idx


class RawBatches:
    """Raw batches for full fine-tuning: texts and uint8 pixels of the batch's notes.

    Holds no model (only sizes), so DataLoader workers can build batches; the model normalises
    the pixels on its own device.
    """

    def __init__(self, corpus, table, model: UniNoteModel):
        cfg = model.config
        self.corpus, self.table = corpus, table
        self.size, self.n_cells = cfg.image_size, cfg.n_region_cells

    def __call__(self, pairs: np.ndarray):
        union, idx = pair_index(self.table, pairs)
        notes = [self.corpus.notes[int(r)] for r in union]
        images, owner = [], []
        for i, note in enumerate(notes):
            for j in range(len(note.images)):
                try:
                    images.append(load_image(self.corpus.image_path(note, j)))
                    owner.append(i)
                except (OSError, ValueError):
                    continue  # counted by the feature pass; a broken photo is just left out here
        empty = torch.zeros(0, 3, self.size, self.size, dtype=torch.uint8)
        pixels = load_pixels(images, self.size) if images else empty
        owner_t = torch.tensor(owner, dtype=torch.long)
        first = first_rows(owner_t, len(union))  # regions are computed for every photo here
        idx["region_q"] = region_rows(first[idx["q"]], self.n_cells)
        idx["region_p"] = region_rows(first[idx["p"]], self.n_cells)
        texts = [n.text() for n in notes]
        return {"texts": texts, "has_text": torch.tensor([bool(t.strip()) for t in texts]),
                "pixels": pixels, "image_owner": owner_t}, idx


class StepBatches(torch.utils.data.Dataset):
    """Step i -> (batch, index, seconds to build it); with ``num_workers`` a DataLoader prepares
    batches ahead."""

    def __init__(self, steps, make_batch):
        self.steps, self.make_batch = steps, make_batch

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int):
        t0 = time.perf_counter()
        batch, idx = self.make_batch(self.steps[i])
        return batch, idx, time.perf_counter() - t0


def region_rows(photo_rows: torch.Tensor, n_cells: int) -> torch.Tensor:
    """(B, R) rows of the region output for photos whose regions all were computed (-1 = none)."""
    cells = torch.arange(n_cells)
    return torch.where(photo_rows[:, None] >= 0, photo_rows[:, None] * n_cells + cells, torch.full_like(cells, -1))


def train_sft(corpus, out_dir: str | Path, cfg: SFTConfig, progress: bool = True) -> tuple[UniNoteModel, dict]:
    """Train stage-1 SFT on ``corpus`` and write the checkpoint to ``out_dir``; returns (model, metrics)."""
    cfg.validate()
    seed_everything(cfg.seed)
    start = time.perf_counter()
    device = resolve_device(cfg.device, auto_cuda=cfg.full_finetune)  # heads on cached features: CPU
    rank, world = init_distributed(device) if cfg.full_finetune else (0, 1)
    model = UniNoteModel(cfg.model_config()).to(device)
    model.runtime = cfg.runtime
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing()
    table = pair_table(corpus, cfg.hard_negatives, cfg.mask_grade)
    feature_seconds = 0.0
    if cfg.full_finetune:
        batches = RawBatches(corpus, table, model)
    else:
        t0 = time.perf_counter()
        torch.set_num_threads(cfg.feature_threads)
        feats = corpus_features(corpus, model, progress=progress, maps=True)
        feature_seconds = time.perf_counter() - t0
        batches = FeatureBatches(feats, table, model.config.n_region_cells, cfg.region_pairs, cfg.map_crop, cfg.seed)
    torch.set_num_threads(cfg.threads)
    steps = batch_order(len(table.q), cfg.batch_size, cfg.epochs, cfg.seed, rank, world)[: cfg.max_steps]
    loss_fn = build_loss(cfg)
    # the Matryoshka segment gains and the text pooling query stay at identity here: RL learns them
    head_params = [p for n, p in model.named_parameters() if p.requires_grad and n not in IDENTITY_AT_ZERO
                   and not n.startswith(("text_tower", "image_tower"))]
    tower_params = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(("text_tower", "image_tower"))]
    groups = [{"params": head_params, "lr": cfg.lr}]
    if tower_params:
        scale = cfg.backbone_lr_scale if cfg.full_finetune else cfg.image_blocks_lr_scale
        groups.append({"params": tower_params, "lr": cfg.lr * scale})
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(len(steps), cfg.warmup_ratio))
    runner = model
    if world > 1:
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
    build_seconds = wait_seconds = 0.0
    t_wait = time.perf_counter()
    for step, (batch, idx, built) in enumerate(bar):
        wait_seconds += time.perf_counter() - t_wait
        build_seconds += built
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
            terms.append({"step": step, **{k: round(float(v), 4) for k, v in objective.last_terms.items()}})
            bar.set_postfix(loss=f"{curve[-1]:.3f}")
        t_wait = time.perf_counter()
    model.eval()
    metrics = {"steps": len(steps), "loss_curve": curve, "loss_terms": terms,
               "feature_seconds": round(feature_seconds, 2),
               "train_seconds": round(time.perf_counter() - t_train, 2),
               # time the loop stood waiting for batches, and the time spent building them (in
               # DataLoader workers when num_workers > 0): wait close to train_seconds = input-bound
               "data_wait_seconds": round(wait_seconds, 2), "batch_build_seconds": round(build_seconds, 2),
               "wall_seconds": round(time.perf_counter() - start, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
               "n_pairs": int(len(table.q)), "world_size": world, "device": str(device),
               "trainable_parameters": int(sum(p.numel() for p in head_params + tower_params))}
    if rank == 0:
        out = Path(out_dir)
        model.save_pretrained(out)
        metrics["version"] = model.version
        cfg.save(out / "training_config.json", corpus=str(corpus.root), corpus_name=corpus.name)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return model, metrics
