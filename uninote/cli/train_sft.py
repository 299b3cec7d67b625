"""``uninote train-sft``: stage-1 contrastive SFT of the UniNote model on a corpus."""

from __future__ import annotations

import argparse
import dataclasses
import json

from uninote.cli.main import DefaultsHelp, flag

HELP = """Train heads + fusion (default: frozen backbones on cached features, CPU minutes) or the whole
model (--full-finetune: GPU, bf16, `torchrun --nproc_per_node N -m uninote.cli.main train-sft ...`
for DDP). With no other flag this trains the model reported in docs/RESULTS.md. Writes
config.json, model.safetensors, training_config.json and metrics.json to --out."""


def register(subparsers) -> None:
    from uninote.train.sft_config import SFTConfig

    p = subparsers.add_parser("train-sft", help="stage-1 contrastive SFT (InfoNCE + Matryoshka)",
                              description=HELP, formatter_class=DefaultsHelp)
    p.add_argument("--corpus", required=True, help="training corpus (native folder or any load_corpus source)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    for f in dataclasses.fields(SFTConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_ = f.metadata.get("help", "")
        if f.name == "matryoshka":
            p.add_argument("--no-matryoshka", dest="matryoshka", action="store_false",
                           default=argparse.SUPPRESS,
                           help="train without the Matryoshka loss (full dim only)")
        elif f.name in ("full_finetune", "gradient_checkpointing"):
            p.add_argument(flag(f.name), action="store_true", help=help_)
        elif f.name == "bf16":
            p.add_argument("--no-bf16", dest="bf16", action="store_false", default=argparse.SUPPRESS,
                           help="disable bf16 autocast on CUDA")
        elif f.name in ("matryoshka_dims", "matryoshka_weights"):
            typ = int if f.name == "matryoshka_dims" else float
            p.add_argument(flag(f.name), type=typ, nargs="+", default=default, help=help_)
        elif f.name == "loss_weights":
            p.add_argument(flag(f.name), type=json.loads, default=default, help=help_ + " (JSON object)")
        else:
            typ = {"max_steps": int, "note_colour_scale": float}.get(f.name, type(default))
            p.add_argument(flag(f.name), type=typ, default=default, help=help_)
    p.set_defaults(func=run)


def run(args) -> int:
    import dataclasses as dc

    from uninote.data import load_corpus
    from uninote.train.sft import train_sft
    from uninote.train.sft_config import SFTConfig

    given = vars(args)  # --no-* switches leave their field out unless given (SUPPRESS)
    values = {f.name: given[f.name] for f in dc.fields(SFTConfig) if f.name in given}
    if values["loss_weights"] is not None:
        values["loss_weights"] = {**SFTConfig().loss_weights, **values["loss_weights"]}
    cfg = SFTConfig(**values).validate()
    corpus = load_corpus(args.corpus)
    _, metrics = train_sft(corpus, args.out, cfg, progress=not args.quiet)
    print(f"wrote {args.out}: version {metrics.get('version')}, {metrics['steps']} steps, "
          f"loss {metrics['loss_curve'][0]:.3f} -> {metrics['loss_curve'][-1]:.3f}, "
          f"{metrics['wall_seconds']:.0f}s (features {metrics['feature_seconds']:.0f}s), "
          f"peak RSS {metrics['peak_rss_mb']:.0f} MB")
    return 0
