"""``uninote train-rl``: stage-2 RL from graded relevance (GRPO over Plackett-Luce rankings)."""

from __future__ import annotations

import argparse
import dataclasses

from uninote.cli.main import DefaultsHelp, flag

HELP = """Improve an SFT checkpoint from people's grades. The policy is the model itself: for each
query its similarities over a candidate pool (its own top neighbours plus the graded candidates)
define a Plackett-Luce ranking distribution; G rankings are sampled per query, rewarded with
NDCG@k from the grades (a reward model trained on the grades scores candidates nobody graded;
human grades always win), advantages are normalised within each group (GRPO) and a KL penalty
keeps the space close to the SFT reference, at every Matryoshka prefix. Trains heads + fusion on
cached frozen-backbone features: CPU minutes for 2,000 grades; --device cuda uses bf16 autocast.
Several GPUs: `torchrun --nproc_per_node N $(which uninote) train-rl ... --device cuda`.
Re-running with the same --out resumes from its last checkpoint. With no tuning flag this runs
the recommended settings reported in docs/results/rl.md."""


def register(subparsers) -> None:
    from uninote.train.rl_config import RLConfig

    p = subparsers.add_parser("train-rl", help="stage-2 RL from graded relevance (GRPO, KL to SFT)",
                              description=HELP, formatter_class=DefaultsHelp)
    p.add_argument("--init", required=True, help="SFT checkpoint folder (or Hub id) to start from")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--rewards", help="folder written by the annotations export (graded pairs)")
    src.add_argument("--db", help="annotation store URL (sqlite:///path.db, postgresql+psycopg://...)")
    p.add_argument("--corpus", help="corpus the grades refer to (default: the one the store records)")
    p.add_argument("--out", required=True, help="checkpoint folder to write (resumes if it holds a run)")
    p.add_argument("--max-pairs", type=int, help="use only the first N graded pairs (collection order)")
    p.add_argument("--aggregation", choices=["posterior", "mean"], default="posterior",
                   help="how several grades of one pair combine: 'posterior' (default; expected true grade "
                        "under a grader-noise model fitted on overlapping grades) or 'mean'")
    p.add_argument("--config", help="JSON file of RLConfig fields (flags given here override it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for f in dataclasses.fields(RLConfig):  # unset flags stay absent: RLConfig's default (or --config) applies
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_ = f"{f.metadata.get('help', '')} (default: {default})"
        unset = argparse.SUPPRESS
        if f.name in ("rm_queries", "bf16"):
            p.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false",
                           default=unset, help=f"turn off: {f.metadata.get('help', '')}")
        elif f.name == "query_modalities":
            p.add_argument(flag(f.name), nargs="+", choices=["note", "image", "text"], default=unset, help=help_)
        elif f.name == "frozen_modules":
            p.add_argument(flag(f.name), nargs="*", choices=["text_head", "image_head", "fusion"], default=unset,
                           help=f"{help_}; give the flag with no names to train every module")
        elif f.name in ("matryoshka_dims", "matryoshka_weights"):
            typ = int if f.name == "matryoshka_dims" else float
            p.add_argument(flag(f.name), type=typ, nargs="+", default=unset, help=f.metadata.get("help", ""))
        else:
            p.add_argument(flag(f.name), type=type(default), default=unset, help=help_)
    p.set_defaults(func=run)


def resolve_config(args):
    """RLConfig from defaults, then --config JSON, then explicit flags."""
    from uninote.train.rl_config import RLConfig

    values = RLConfig().to_dict()
    if args.config:
        values.update(RLConfig.load(args.config).to_dict())
    for name in values:
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    return RLConfig(**values).validate()


def run(args) -> int:
    from tqdm.auto import tqdm

    from uninote.train.rl_pipeline import load_graded, run_rl

    cfg = resolve_config(args)
    graded = load_graded(args.rewards, args.db, args.max_pairs, args.aggregation)
    bar = tqdm(total=cfg.steps, desc="rl", disable=args.quiet)

    def progress(step, total, stats):
        bar.n = step
        bar.set_postfix(reward=f"{stats['reward']:.3f}", kl=f"{stats['kl']:.4f}")
        bar.refresh()

    result = run_rl(args.init, graded, args.out, cfg, corpus=args.corpus, on_progress=progress,
                    progress_bar=not args.quiet)
    bar.close()
    m = result.metrics
    print(f"RL done: {m['steps']} steps, {m['reward_data']['pairs']} graded pairs on "
          f"{m['reward_data']['queries']} queries, {m['steps_per_second']:.2f} steps/s on {m['device']}")
    print("reward first->last 20 steps: " + ", ".join(
        f"{k} {m['reward_first20'][k]:.3f}->{m['reward_last20'][k]:.3f}" for k in m["reward_first20"]))
    held = m.get("reward_model", {}).get("heldout")
    if held:
        print(f"reward model (held-out queries): accuracy {held['accuracy']:.3f} "
              f"(majority {held['majority_accuracy']:.3f}), MAE {held['mae']:.3f}, ECE {held['ece']:.3f}")
    for message in m.get("warnings", []):
        print(f"WARNING: {message}")
    print(f"wrote {args.out}")
    return 0
