"""The ``uninote`` console script: one entry point, one subcommand per job.

Each subcommand lives in its own module under ``uninote/cli/`` and exposes
``register(subparsers)``; heavy imports (torch, faiss) happen inside the command, so ``--help``
is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module name under uninote.cli, in the order --help lists them
COMMAND_MODULES = [
    "prepare",
    "train_sft",
    "embed",
    "eval_cmd",
    "index_cmd",
    "i2i_cmd",
    "bench",
    "annotations_cmd",
    "train_rl",
    "worker",
]


def flag(name: str) -> str:
    """The command-line flag of a config field: ``learning_rate`` -> ``--learning-rate``."""
    return "--" + name.replace("_", "-")


def add_runtime(p: argparse.ArgumentParser) -> None:
    """``--runtime``: what runs the frozen backbones when a command embeds."""
    from uninote.config import RUNTIMES

    p.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="what runs the frozen backbones: 'onnx' (ONNX Runtime, CPU), 'torch', 'auto' "
                   "(ONNX Runtime on CPU, torch on CUDA), or 'onnx-int8' (ONNX Runtime with INT8-quantised "
                   "towers, opt-in; see docs/results/model.md); default $UNINOTE_RUNTIME, else auto")


def add_ray(p: argparse.ArgumentParser, workers: str) -> None:
    """``--ray`` and ``--workers``: run the job on a Ray cluster instead of in this process."""
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on the Ray cluster at ADDRESS (HOST:PORT of the head, ray://HOST:PORT, or 'auto' "
                   "for the cluster started on this machine); default: this process, no Ray")
    p.add_argument("--workers", type=int, default=None, help=f"with --ray: {workers}")


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help only when X says something (not None, not suppressed)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or "(default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uninote",
        description="UniNote: one embedding model for multimodal note-to-note retrieval. "
        "Prepare a corpus, train (SFT then RL), embed, index, evaluate, benchmark, annotate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"uninote.cli.{name}")
        except ModuleNotFoundError as exc:  # a command still being written; tests require all
            if exc.name != f"uninote.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors: one clear line, no traceback
        from uninote.errors import UniNoteError

        if isinstance(exc, UniNoteError):
            print(f"uninote {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
