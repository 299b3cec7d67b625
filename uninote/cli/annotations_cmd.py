"""``uninote export-rewards`` and ``uninote db backup|check|migrate|stats``: the annotation store.

The database is a URL (``sqlite:////abs/path.db``, ``postgresql+psycopg://user:pw@host/db``) or a
file path; without ``--db`` it is ``$UNINOTE_DB``, else ``/data/uninote/annotations.db`` on a
Hugging Face Space with persistent storage, else ``~/.cache/uninote/annotations.db``.
"""

from __future__ import annotations

import argparse
import json

DB_HELP = "database URL or SQLite file path (default: $UNINOTE_DB, /data/uninote/..., ~/.cache/uninote/...)"


def register(subparsers) -> None:
    ex = subparsers.add_parser(
        "export-rewards", help="export grades as RL reward data (Parquet + JSONL + manifest)",
        description="Write graded pairs, listwise groups per query and preference pairs "
        "({prompt, chosen, rejected}) as Parquet and JSONL, plus manifest.json with counts and a "
        "fingerprint of the grades. Read them back with annotations.export.load_rewards(DIR).",
    )  # fmt: skip
    ex.add_argument("--db", default=None, help=DB_HELP)
    ex.add_argument("--out", required=True, help="output folder (created)")
    ex.add_argument("--min-margin", type=float, default=1.0,
                    help="smallest mean-grade difference that makes a preference pair (default 1)")
    ex.add_argument("--min-group-size", type=int, default=2,
                    help="smallest number of graded candidates for a listwise group (default 2)")
    ex.add_argument("--push-to-hub", metavar="REPO", default=None,
                    help="also upload the folder to this Hugging Face Hub dataset repo")
    ex.set_defaults(func=run_export)

    db = subparsers.add_parser(
        "db", help="annotation database: backup, check, migrate, stats",
        description="Maintain the annotation database while annotators keep working.",
    )
    sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("backup", help="online backup (VACUUM INTO), then integrity_check of the copy")
    b.add_argument("--out", required=True, help="backup file to create (must not exist)")
    c = sub.add_parser("check", help="schema version, SQLite settings and PRAGMA integrity_check")
    m = sub.add_parser("migrate", help="migrate an older schema (a backup is made first; no data dropped)")
    s = sub.add_parser("stats", help="row counts, per-annotator stats, agreement, queue sources")
    for p in (b, c, m, s):
        p.add_argument("--db", default=None, help=DB_HELP)
    b.set_defaults(func=run_backup)
    c.set_defaults(func=run_check)
    m.set_defaults(func=run_migrate)
    s.set_defaults(func=run_stats)


def _open(args, migrate: bool = False):
    from annotations.store import AnnotationStore

    return AnnotationStore(args.db, migrate=migrate)


def run_export(args: argparse.Namespace) -> int:
    from annotations.export import export_rewards, push_to_hub

    with _open(args) as store:
        manifest = export_rewards(store, args.out, args.min_margin, args.min_group_size)
    print(json.dumps({"out": args.out, "counts": manifest["counts"],
                      "fingerprint": manifest["fingerprint"]}, indent=2))  # fmt: skip
    if args.push_to_hub:
        print("pushed:", push_to_hub(args.out, args.push_to_hub))
    return 0


def run_backup(args: argparse.Namespace) -> int:
    with _open(args) as store:
        dest = store.backup(args.out)
    print(f"backup written and verified (integrity_check ok): {dest}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    with _open(args) as store:
        report = store.check()
    print(json.dumps(report, indent=2))
    return 0 if report.get("integrity_check", "ok") == "ok" else 1


def run_migrate(args: argparse.Namespace) -> int:
    with _open(args, migrate=True) as store:
        print(json.dumps(store.migration, indent=2))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    import pandas as pd

    from annotations.agreement import annotator_summary, overall_alpha, pairwise_agreement
    from annotations.queue import LabelQueue

    with _open(args) as store:
        judgments = store.judgments()
        print("rows:", json.dumps(store.counts()))
        print("\nannotators:\n" + pd.DataFrame(annotator_summary(judgments)).to_string(index=False))
        print("\npairwise agreement:\n" + pd.DataFrame(pairwise_agreement(judgments)).to_string(index=False))
        print("\nKrippendorff alpha (ordinal):", json.dumps(overall_alpha(judgments)))
        print("\nqueue sources:\n" + pd.DataFrame(LabelQueue(store).source_report()).to_string(index=False))
    return 0
