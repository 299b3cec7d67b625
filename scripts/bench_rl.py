"""Time RL steps on a device and print a table (steps/s, ms/step) per batch size.

    .venv/bin/python scripts/bench_rl.py --device cpu --steps 20
    .venv/bin/python scripts/bench_rl.py --device cuda --steps 200 --queries 16 64 256
    .venv/bin/python scripts/bench_rl.py --init /root/.cache/uninote/models/sft-fashion \
        --corpus /root/.cache/uninote/prepared/fashion-train --device cpu

Without --init/--corpus it uses the default model architecture (MiniLM + EfficientNet-Lite0 heads,
768-d) with random heads on synthetic backbone features of --notes notes, so it needs no data.
The timed loop is exactly ``RLTrainer.train_step`` (sampling, rewards, PL log-prob, KL, backward,
AdamW); the first --warmup steps are not timed. ``--pooling attention mean`` times the default
(RL learns the text pooling over token states; synthetic notes get --tokens states each) against
mean-pooled features in the same run.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def synthetic(model, n_notes: int, seed: int = 0, tokens: int = 16):
    from uninote.model.features import CorpusFeatures
    from uninote.train.rl_data import GradedPairs

    g = torch.Generator().manual_seed(seed)
    ft, fi = model.text_tower.feature_dim, model.image_tower.feature_dim
    cells = model.config.n_region_cells
    feats = CorpusFeatures([f"n{i}" for i in range(n_notes)], torch.randn(n_notes, ft, generator=g).half(),
                           torch.ones(n_notes, dtype=torch.bool), torch.randn(n_notes, fi, generator=g).half(),
                           torch.arange(n_notes), torch.zeros(n_notes, dtype=torch.long),
                           torch.zeros(n_notes, cells, fi).half())
    if model.config.text_pooling == "attention":
        feats.tokens = torch.randn(n_notes * tokens, ft, generator=g).half()
        feats.token_offsets = torch.arange(n_notes + 1) * tokens
    rng = np.random.default_rng(seed)
    grades = {f"n{q}": {f"n{c}": float(rng.integers(0, 4)) for c in rng.choice(n_notes, 12, replace=False) if c != q}
              for q in range(min(200, n_notes))}
    return feats, GradedPairs(grades, source="synthetic")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--queries", type=int, nargs="+", default=[16], help="queries_per_step values to time")
    ap.add_argument("--notes", type=int, default=4000, help="synthetic corpus size")
    ap.add_argument("--init", help="checkpoint folder (default: random heads, default architecture)")
    ap.add_argument("--tiny-width", type=int, default=0, help=(
        "use random 'tiny' towers of this feature width (768-d space, 1024 hidden) instead of the bundled "
        "backbones: same head/fusion cost class, no backbone packages needed (GPU boxes)"))
    ap.add_argument("--corpus", help="corpus folder (needs --init); its cached features are used")
    ap.add_argument("--rewards-db", help="store URL for real grades (default: synthetic grades)")
    ap.add_argument("--pooling", nargs="+", default=["attention", "mean"], choices=["attention", "mean"],
                    help="text pooling to time: 'attention' (RL's default) and/or 'mean' (text_pool_lr 0)")
    ap.add_argument("--tokens", type=int, default=16, help="token states per synthetic note")
    args = ap.parse_args()

    from uninote.model.uninote import UniNoteModel
    from uninote.train.rl import RLTrainer
    from uninote.train.rl_config import RLConfig
    from uninote.train.rl_pipeline import prepare_pooling

    from uninote.model.config import UniNoteConfig

    def config_for(pooling: str, queries: int = 16) -> RLConfig:
        return RLConfig(device=args.device, queries_per_step=queries, steps=args.warmup + args.steps, rm_epochs=5,
                        text_pool_lr=1e-3 if pooling == "attention" else 0.0)

    def build(pooling: str):
        if args.init:
            model = UniNoteModel.from_pretrained(args.init)
        elif args.tiny_width:
            model = UniNoteModel(UniNoteConfig(text_tower="tiny", image_tower="tiny", tiny_width=args.tiny_width))
        else:
            model = UniNoteModel()
        prepare_pooling(model, config_for(pooling))
        if args.corpus:
            from uninote.data import load_corpus
            from uninote.model.features import corpus_features

            feats = corpus_features(load_corpus(args.corpus), model, progress=False)
            _, graded = synthetic(model, len(feats), tokens=args.tokens)
            graded.grades = {feats.note_ids[int(q[1:])]: {feats.note_ids[int(c[1:])]: g for c, g in cs.items()}
                             for q, cs in graded.grades.items()}
        else:
            feats, graded = synthetic(model, args.notes, tokens=args.tokens)
        if args.rewards_db:
            from uninote.train.rl_data import from_store

            graded = from_store(args.rewards_db)
        return model, feats, graded

    rows = []
    for pooling, q in [(p, q) for p in args.pooling for q in args.queries]:
        model, feats, graded = build(pooling)
        cfg = config_for(pooling, q)
        trainer = RLTrainer(model, feats, graded, cfg, "/tmp/bench-rl-unused")
        trainer.refresh_neighbours()
        for s in range(args.warmup + args.steps):
            if s == args.warmup:
                if args.device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            trainer.train_step(np.random.default_rng(s), torch.Generator(device=trainer.device).manual_seed(s))
        if args.device == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / args.steps
        rows.append((pooling, q, cfg.group_size, cfg.pool_size, len(trainer.dims), 1.0 / dt, 1000 * dt))
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"device: {args.device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"bf16 autocast: {args.device == 'cuda'}, notes: {len(feats)}, "
          f"features text/image: {model.text_tower.feature_dim}/{model.image_tower.feature_dim}")
    print("| text pooling | queries/step | G | pool | dims | steps/s | ms/step |")
    print("|---|---|---|---|---|---|---|")
    for pooling, q, g, p, d, sps, ms in rows:
        print(f"| {pooling} | {q} | {g} | {p} | {d} | {sps:.2f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
