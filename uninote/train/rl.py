"""Stage 2: reinforcement learning from graded relevance (GRPO over Plackett-Luce rankings).

The policy is the embedding model itself. For a query q with a candidate pool C (its graded
candidates plus the policy's own current top neighbours), the similarities at a Matryoshka prefix
d define logits ``s_j = cos_d(q, c_j) / tau`` and a Plackett-Luce ranking distribution. Each step,
for every query and every dim, we sample G top-k rankings, reward each with NDCG@k under the
grades (human grades; the reward model's expected grade for candidates nobody graded), normalise
rewards within the group (GRPO advantages) and minimise

    L = sum_d w_d [ -mean(A * log P_d(ranking)) + beta * KL(P_d || P_d^ref) ] / sum_d w_d

where the reference is the frozen SFT model the run started from. Only heads and fusion train, on
cached frozen-backbone features (``UniNoteModel.forward_features``); bf16 autocast on CUDA. Under
``torchrun`` each rank samples its own queries and gradients are averaged across ranks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from uninote.errors import ConfigError
from uninote.losses.kl import k3_kl, listwise_kl
from uninote.losses.matryoshka import matryoshka_prefix
from uninote.losses.policy_gradient import listnet_loss, policy_gradient_loss
from uninote.model.uninote import SEGMENT_GAIN, TEXT_POOL
from uninote.train import plackett_luce
from uninote.train.advantages import group_advantages
from uninote.train.devices import resolve_device
from uninote.train.reward_model import NoteReps, RewardModelConfig, train_reward_model
from uninote.train.rewards import batch_rewards
from uninote.train.rl_checkpoint import find_resume, save_checkpoint
from uninote.train.rl_config import RLConfig
from uninote.train.rl_data import GradedPairs

log = logging.getLogger(__name__)
NOISY_GRADES = 0.15  # estimated grader error rate from which RL warns
ProgressFn = Callable[[int, int, dict], None]


class StopTraining(Exception):
    """Raised when ``should_stop`` asks the run to end (e.g. SIGTERM); a checkpoint was saved."""


def _rl_batch(feats, rows: np.ndarray) -> dict[str, torch.Tensor]:
    """``forward_features`` input without region features (RL only needs note vectors)."""
    b = feats.batch(rows)
    return {k: v for k, v in b.items() if k not in ("region", "image_rows")}


def embed_notes(model, feats, batch_size: int = 512, autocast: bool = False) -> NoteReps:
    """Unit note, text and photo-mean vectors of every note in ``feats`` (no gradient)."""
    parts = {"note": [], "text": [], "image": [], "has_image": [], "first_image": []}
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=autocast):
        for s in range(0, len(feats), batch_size):
            rows = np.arange(s, min(s + batch_size, len(feats)))
            out = model.forward_features(_rl_batch(feats, rows))
            img_sum = out["note"].new_zeros(len(rows), out["image"].shape[-1]).float()
            img_sum.index_add_(0, out["image_owner"], out["image"].float())
            parts["note"].append(out["note"].float())
            parts["text"].append(out["text"].float())
            parts["image"].append(F.normalize(img_sum, dim=-1))
            parts["has_image"].append(out["has_image"])
            parts["first_image"].append(first_image(out["image"].float(), out["image_owner"], len(rows)))
    model.train(was_training)
    return NoteReps(*(torch.cat(parts[k]) for k in ("note", "text", "image", "has_image", "first_image")))


def prefix_logits(q: torch.Tensor, pool: torch.Tensor, dim: int, temperature: float) -> torch.Tensor:
    """(Q, P) cosine of each query (Q, D) to its pool (Q, P, D) at Matryoshka prefix ``dim``, over tau."""
    return (matryoshka_prefix(q, dim).unsqueeze(1) * matryoshka_prefix(pool, dim)).sum(-1) / temperature


def first_image(image: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """(n, D) the first photo's vector of each note (zeros for notes without a photo).

    Image-only queries use the first photo (``QueryEmbedding.vectors("image", ...)``).
    """
    first = torch.full((n,), image.shape[0], dtype=torch.long, device=image.device)
    first = first.scatter_reduce(0, owner, torch.arange(image.shape[0], device=image.device), reduce="amin")
    padded = torch.cat([image, image.new_zeros(1, image.shape[1])])
    return padded[first]


class RLTrainer:
    """Runs the RL stage for one model on one corpus's features and one set of graded pairs."""

    def __init__(self, model, feats, graded: GradedPairs, config: RLConfig, out_dir: str | Path,
                 on_progress: ProgressFn | None = None, should_stop: Callable[[], bool] | None = None):
        self.cfg = config.validate()
        self.model, self.feats, self.out_dir = model, feats, Path(out_dir)
        if model.config.text_pooling == "attention" and feats.tokens is None:
            raise ConfigError("the model pools token states but the features have none: compute them "
                              "after model.use_token_pooling() (uninote.train.rl_pipeline.run_rl does)")
        self.on_progress, self.should_stop = on_progress, should_stop or (lambda: False)
        self.device = resolve_device(self.cfg.device)
        self.autocast = self.device.type == "cuda" and self.cfg.bf16
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.model.to(self.device)
        dims = self.cfg.matryoshka_dims or list(model.config.matryoshka_dims)
        self.dims = [d for d in dims if d <= model.embed_dim] or [model.embed_dim]
        w = self.cfg.matryoshka_weights or [1.0] * len(self.dims)
        self.weights = [float(x) / sum(w) for x in w[: len(self.dims)]]
        self.graded = graded.restrict(feats.note_ids)
        if len(self.graded) == 0:
            raise ConfigError("none of the graded pairs refer to notes of this corpus: check --corpus")
        self.human = {int(feats.rows_of([q])[0]): {int(feats.rows_of([c])[0]): g for c, g in cs.items()}
                      for q, cs in self.graded.grades.items()}
        self.graded_queries = np.array(sorted(self.human), dtype=np.int64)
        scale = max(1.0, self.cfg.anchor_ref_pairs / len(self.graded)) if self.cfg.anchor_ref_pairs else 1.0
        self.anchor_coef = self.cfg.anchor_coef * scale
        self.ref = embed_notes(model, feats, autocast=self.autocast)  # frozen SFT reference
        self.reward_model, self.rm_metrics, self.ungraded = None, {}, self.cfg.ungraded
        if self.ungraded in ("reward_model", "auto"):
            self._fit_reward_model()
            if self.ungraded == "auto":
                self._gate_reward_model()
        # the identity-at-zero weights train at their own rates, or stay fixed at 0
        own_lr = {SEGMENT_GAIN: self.cfg.segment_gain_lr,
                  TEXT_POOL: self.cfg.text_pool_lr if model.config.text_pooling == "attention" else 0.0}
        for name, p in model.named_parameters():  # trained image blocks stay at SFT: RL reads pooled features
            if name.split(".")[0] in (*self.cfg.frozen_modules, "image_tower", "text_tower") or own_lr.get(name, 1.0) == 0:
                p.requires_grad_(False)
        named = dict(model.named_parameters())
        groups = [{"params": [p for n, p in named.items() if p.requires_grad and n not in own_lr]}]
        groups += [{"params": [named[n]], "lr": lr} for n, lr in own_lr.items() if named[n].requires_grad]
        self.optimizer = torch.optim.AdamW(groups, lr=self.cfg.learning_rate, weight_decay=self.cfg.weight_decay)
        self.step, self.history, self.neighbours, self.ref_neighbours = 0, [], None, None

    # --- setup ---------------------------------------------------------------------------------
    def _fit_reward_model(self) -> None:
        q, c, g = zip(*[(qr, cr, gr) for qr, cs in self.human.items() for cr, gr in cs.items()])
        rm_cfg = RewardModelConfig(hidden_dim=self.cfg.rm_hidden_dim, epochs=self.cfg.rm_epochs,
                                   heldout_fraction=self.cfg.rm_heldout_fraction, seed=self.cfg.seed)
        reps = NoteReps(*(t.cpu() for t in (self.ref.note, self.ref.text, self.ref.image, self.ref.has_image)))
        self.reward_model, self.rm_metrics = train_reward_model(reps, np.array(q), np.array(c), np.array(g), rm_cfg)
        if rm_cfg.heldout_fraction > 0:  # report on held-out queries, then refit on every grade
            self.reward_model, _ = train_reward_model(reps, np.array(q), np.array(c), np.array(g),
                                                      RewardModelConfig(**{**rm_cfg.__dict__, "heldout_fraction": 0.0}))
        self.reward_model.to(self.device)
        log.info("reward model: %s", self.rm_metrics.get("heldout", self.rm_metrics["train"]))

    def _gate_reward_model(self) -> None:
        """'auto': keep the reward model only if it clearly beats the majority class on held-out queries."""
        held = self.rm_metrics.get("heldout")
        margin = held["accuracy"] - held["majority_accuracy"] if held else float("-inf")
        use = margin >= self.cfg.rm_min_margin
        self.ungraded = "reward_model" if use else "drop"
        self.rm_metrics["used"] = use
        self.rm_metrics["margin"] = margin
        if not use:
            self.reward_model = None
            log.info("reward model margin %.3f < %.3f: pools hold graded candidates only", margin,
                     self.cfg.rm_min_margin)

    def refresh_neighbours(self) -> None:
        """Each note's current top ``policy_topk`` neighbours under the policy (full dim)."""
        k = self.cfg.policy_topk
        if k == 0 or self.ungraded == "drop":
            self.neighbours = None
            return
        note = embed_notes(self.model, self.feats, autocast=self.autocast).note
        out = []
        for s in range(0, len(note), 1024):
            sims = note[s:s + 1024] @ note.T
            sims[torch.arange(sims.shape[0]), torch.arange(s, s + sims.shape[0])] = -float("inf")
            out.append(sims.topk(min(k, len(note) - 1), dim=1).indices.cpu())
        self.neighbours = torch.cat(out).numpy()

    # --- one step ------------------------------------------------------------------------------
    def sample_queries(self, rng: np.random.Generator) -> np.ndarray:
        b = self.cfg.queries_per_step
        if self.reward_model is None or not self.cfg.rm_queries:
            return rng.choice(self.graded_queries, size=b, replace=len(self.graded_queries) < b)
        n_rm = int(round(b * self.cfg.rm_query_fraction))
        human = rng.choice(self.graded_queries, size=b - n_rm, replace=len(self.graded_queries) < b - n_rm)
        return np.concatenate([human, rng.integers(0, len(self.feats), size=n_rm)])

    def build_pools(self, queries: np.ndarray, rng: np.random.Generator):
        """Pool rows (Q, P), validity mask and grade matrix (Q, P) for the sampled queries."""
        p = self.cfg.pool_size
        pools, grades = [], []
        for q in queries.tolist():
            human = self.human.get(q, {})
            graded = list(human)
            if len(graded) > p:
                graded = rng.choice(graded, size=p, replace=False).tolist()
            pool = list(graded)
            if self.neighbours is not None:
                pool += [int(c) for c in self.neighbours[q] if int(c) not in human and int(c) != q][: p - len(pool)]
            pools.append(pool)
            grades.append([human.get(c, math.nan) for c in pool])
        width = max(len(x) for x in pools)
        rows = np.zeros((len(pools), width), dtype=np.int64)
        valid = np.zeros((len(pools), width), dtype=bool)
        g = np.full((len(pools), width), math.nan, dtype=np.float32)
        for i, (pool, gr) in enumerate(zip(pools, grades)):
            rows[i, : len(pool)], valid[i, : len(pool)], g[i, : len(pool)] = pool, True, gr
        g = torch.from_numpy(g)
        missing = torch.from_numpy(valid) & torch.isnan(g)
        if missing.any():
            if self.reward_model is not None:
                qr = torch.from_numpy(np.repeat(queries[:, None], width, 1))[missing]
                cr = torch.from_numpy(rows)[missing]
                g[missing] = self.reward_model.expected_grade(self.ref, qr.to(self.device), cr.to(self.device)).cpu()
            else:
                g[missing] = 0.0
        return torch.from_numpy(rows), torch.from_numpy(valid), g

    def train_step(self, rng: np.random.Generator, gen: torch.Generator) -> dict:
        cfg = self.cfg
        queries = self.sample_queries(rng)
        rows, valid, grades = self.build_pools(queries, rng)
        uniq, inverse = np.unique(np.concatenate([queries, rows.numpy().ravel()]), return_inverse=True)
        q_idx = torch.from_numpy(inverse[: len(queries)]).to(self.device)
        p_idx = torch.from_numpy(inverse[len(queries):].reshape(rows.shape)).to(self.device)
        self.model.eval()  # no dropout: the sampled policy and its gradient must be the same function
        batch = _rl_batch(self.feats, uniq)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
            out = self.model.forward_features(batch, normalize=False)
        note = out["note"].float()
        u = torch.from_numpy(uniq).to(self.ref.note.device)
        ref_note = self.ref.note[u].to(self.device)
        # query vectors per modality: the fused note vector, and the first photo (image-only queries)
        sides = {"note": (note[q_idx], ref_note[q_idx], torch.ones(len(queries), dtype=torch.bool, device=self.device))}
        if "image" in cfg.query_modalities:
            img = first_image(out["image"].float(), out["image_owner"], len(uniq))
            sides["image"] = (img[q_idx], self.ref.first_image[u].to(self.device)[q_idx], out["has_image"][q_idx])
        if "text" in cfg.query_modalities:
            has_text = batch["has_text"].to(self.device)
            sides["text"] = (out["text"].float()[q_idx], self.ref.text[u].to(self.device)[q_idx], has_text[q_idx])
        # stats stay on the device until the step ends: one host sync per step, not several per dim
        loss, stats = note.new_zeros(()), {k: note.new_zeros(()) for k in ("reward", "kl", "pg")}
        share = 1.0 / len(cfg.query_modalities)
        for modality in cfg.query_modalities:
            qv, qref, ok = sides[modality]
            if not ok.any():
                continue
            sel = torch.nonzero(ok).flatten()
            for dim, w in zip(self.dims, self.weights):
                part, reward, kl, pg = self._ranking_loss(qv[sel], qref[sel], note[p_idx[sel]], ref_note[p_idx[sel]],
                                                          valid[sel.cpu()], grades[sel.cpu()], dim, gen)
                loss = loss + share * w * part
                key = f"reward@{dim}" if modality == "note" else f"{modality}_reward@{dim}"
                stats[key] = reward
                if modality == "note":
                    stats["reward"] += w * reward
                stats["kl"] += share * w * kl
                stats["pg"] += share * w * pg
        if self.anchor_coef > 0:
            anchor = self._anchor_kl(rng)
            loss = loss + self.anchor_coef * anchor
            stats["anchor_kl"] = anchor.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._all_reduce_grads()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        stats["loss"] = loss.detach()
        values = torch.stack([v.float() for v in stats.values()]).tolist()
        return dict(zip(stats, values))

    def _ranking_loss(self, q, q_ref, pool, pool_ref, valid, grades, dim: int, gen):
        """GRPO loss of one query modality at one prefix dim: (loss, mean reward, kl, pg); the last
        three are detached 0-d tensors (mean reward NaN when no ranking has a defined reward)."""
        cfg = self.cfg
        valid_d = valid.to(self.device)
        logits = prefix_logits(q, pool, dim, cfg.temperature)
        ref_logits = prefix_logits(q_ref, pool_ref, dim, cfg.temperature)
        rankings = plackett_luce.sample_rankings(logits, cfg.group_size, cfg.rank_k, valid_d, generator=gen)
        rewards = batch_rewards(cfg.reward, rankings, grades, valid, cfg.rank_k).to(self.device)
        adv = group_advantages(rewards, cfg.advantage_scale)
        defined = torch.isfinite(rewards)
        logp = plackett_luce.log_prob(logits, rankings, valid_d)
        pg = policy_gradient_loss(logp, adv, defined)
        if cfg.kl_estimator == "listwise":
            kl = listwise_kl(logits, ref_logits, valid_d)
        else:
            kl = k3_kl(logp, plackett_luce.log_prob(ref_logits, rankings, valid_d), defined)
        reward = torch.where(defined, rewards, 0.0).sum() / defined.sum()  # 0 / 0 = NaN: none defined
        part = pg + cfg.kl_coef * kl
        if cfg.listwise_coef > 0:
            part = part + cfg.listwise_coef * listnet_loss(logits, grades.to(self.device), valid_d,
                                                           cfg.listwise_power)
        return part, reward.detach(), kl.detach(), pg.detach()

    def _anchor_kl(self, rng: np.random.Generator) -> torch.Tensor:
        """Listwise KL to SFT for random corpus notes against their SFT top neighbours (full dim)."""
        if self.ref_neighbours is None:
            ref = self.ref.note
            top = [(ref[s:s + 1024] @ ref.T).topk(min(self.cfg.pool_size + 1, len(ref)), dim=1).indices[:, 1:]
                   for s in range(0, len(ref), 1024)]
            self.ref_neighbours = torch.cat(top).cpu().numpy()
        queries = rng.integers(0, len(self.feats), size=self.cfg.anchor_queries)
        pools = self.ref_neighbours[queries]
        uniq, inverse = np.unique(np.concatenate([queries, pools.ravel()]), return_inverse=True)
        q_idx = torch.from_numpy(inverse[: len(queries)]).to(self.device)
        p_idx = torch.from_numpy(inverse[len(queries):].reshape(pools.shape)).to(self.device)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.autocast):
            note = self.model.forward_features(_rl_batch(self.feats, uniq))["note"].float()
        ref = self.ref.note[torch.from_numpy(uniq).to(self.ref.note.device)].to(self.device)
        tau = self.cfg.temperature
        dims = [(ref.shape[-1], 1.0)] if self.cfg.anchor_dims == "full" else list(zip(self.dims, self.weights))
        total = note.new_zeros(())
        for dim, w in dims:
            logits = prefix_logits(note[q_idx], note[p_idx], dim, tau)
            ref_logits = prefix_logits(ref[q_idx], ref[p_idx], dim, tau)
            total = total + w * listwise_kl(logits, ref_logits)
        return total

    def _all_reduce_grads(self) -> None:
        if self.world <= 1 or not torch.distributed.is_initialized():
            return
        for p in self.model.parameters():
            if p.grad is not None:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world

    # --- the loop ------------------------------------------------------------------------------
    def train(self, fingerprint: str, extra: dict | None = None) -> dict:
        """Train (resuming from ``out_dir/checkpoint-last`` when it matches), save, return metrics."""
        cfg, extra = self.cfg, dict(extra or {})
        resumed = find_resume(self.out_dir, cfg, fingerprint)
        if resumed is not None:
            self.step, self.history = resumed.load_into(self.model, self.optimizer)
            self.neighbours = resumed.neighbours()
            log.info("resuming RL from step %d", self.step)
        start, t0 = self.step, time.perf_counter()
        while self.step < cfg.steps:
            if (self.neighbours is None and self.step == start) or self.step % cfg.refresh_every == 0:
                self.refresh_neighbours()
            rng = np.random.default_rng([cfg.seed, self.step, self.rank])
            gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1_000_003 + self.step * 97 + self.rank)
            stats = self.train_step(rng, gen)
            self.step += 1
            stats["step"] = self.step
            stats["steps_per_second"] = (self.step - start) / max(time.perf_counter() - t0, 1e-9)
            self.history.append(stats)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                if self.on_progress is not None and self.rank == 0:
                    self.on_progress(self.step, cfg.steps, stats)
            stop = self.should_stop()
            if self.rank == 0 and (stop or (cfg.save_every and self.step % cfg.save_every == 0)):
                save_checkpoint(self.out_dir, self.model, self.optimizer, cfg, fingerprint, self.step,
                                self.history, self.neighbours)
            if stop:
                raise StopTraining(f"stopped at step {self.step}; resume with the same --out")
        metrics = self.summary(fingerprint, time.perf_counter() - t0, start, extra)
        for message in metrics["warnings"]:
            log.warning(message)
        if self.rank == 0:
            self.save(metrics)
        return metrics

    def warnings(self) -> list[str]:
        """What the person running RL should know before trusting the result."""
        rate = self.graded.info.get("estimated_error_rate")
        if rate is not None and rate >= NOISY_GRADES:
            return [f"graders disagree: estimated grader error rate {rate:.2f} (>= {NOISY_GRADES}); RL from "
                    "grades this noisy gained little or lost quality on held-out notes (docs/results/rl.md), so check the "
                    "grading guidelines, or compare this version's evaluation with its parent's before switching"]
        return []

    def summary(self, fingerprint: str, seconds: float, start: int, extra: dict) -> dict:
        first = self.history[: max(1, min(20, len(self.history)))]
        last = self.history[-max(1, min(20, len(self.history))):]
        mean = lambda rows, key: float(np.nanmean([r.get(key, math.nan) for r in rows]))  # noqa: E731
        return {"stage": "rl", "steps": self.step, "dims": self.dims, "dim_weights": self.weights,
                "reward_data": {"fingerprint": fingerprint, "pairs": len(self.graded),
                                "queries": len(self.human), "judgments": self.graded.n_judgments,
                                "source": self.graded.source, "corpus": self.graded.corpus,
                                "estimated_error_rate": self.graded.info.get("estimated_error_rate")},
                "reward_model": self.rm_metrics, "ungraded_effective": self.ungraded,
                "anchor_coef_effective": self.anchor_coef,
                "segment_gains": [round(float(g), 4) for g in self.model.segment_log_gain.detach().exp()],
                "text_pooling": self.model.config.text_pooling,
                "text_pool_query_norm": round(float(self.model.text_pool.query.detach().norm()), 4),
                "reward_first20": {f"@{d}": mean(first, f"reward@{d}") for d in self.dims},
                "reward_last20": {f"@{d}": mean(last, f"reward@{d}") for d in self.dims},
                "kl_last20": mean(last, "kl"), "seconds": round(seconds, 2),
                "steps_per_second": (self.step - start) / max(seconds, 1e-9),
                "device": str(self.device), "bf16": self.autocast, "world_size": self.world,
                "warnings": self.warnings(), "history": self.history, **extra}

    def save(self, metrics: dict) -> Path:
        """Final checkpoint in ``out_dir``: model, resolved config, metrics, reward model."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(self.out_dir)
        (self.out_dir / "training_config.json").write_text(json.dumps(
            {"stage": "rl", "rl": self.cfg.to_dict(), "reward_data_fingerprint": metrics["reward_data"]["fingerprint"],
             "init": metrics.get("init")}, indent=2))
        (self.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
        if self.reward_model is not None:
            self.reward_model.cpu().save(self.out_dir / "reward_model", self.rm_metrics)
        return self.out_dir
