#!/usr/bin/env python
"""Reliability checks of the annotation store: crash safety, concurrency, online backup.

    python scripts/annotations_reliability.py all --workdir WORK --out results.json
    python scripts/annotations_reliability.py kill --rounds 5
    python scripts/annotations_reliability.py concurrency --processes 10 --threads 2 --grades 50

- kill: a child process streams grade writes and prints each id to a pipe only after its commit;
  the parent SIGKILLs it mid-stream, then checks every acknowledged grade is in the database and
  ``PRAGMA integrity_check`` passes.
- concurrency: P processes x T threads (each thread one annotator) grade the same pairs, each
  grade submitted twice (double click); the database must end with exactly one row per
  (annotator, pair) and no write may fail ("database is locked" or anything else). Reports write
  latency p50/p95, next to a single-writer baseline measured in the same run.
- backup: ``store.backup`` while the writers run; the copy must pass integrity_check and open.

The checks live in ``annotations/reliability.py``; this prints their results as JSON and exits 1
when a grade was lost or a write failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from annotations.reliability import check_concurrency, check_kill


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("kill", "concurrency", "all"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", default=None, help="folder for the test databases (default: temp)")
        p.add_argument("--out", default=None, help="write the results as JSON here")
        p.add_argument("--rounds", type=int, default=5)
        p.add_argument("--processes", type=int, default=10)
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--grades", type=int, default=50)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="uninote-rel-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{os.cpu_count()} CPUs", "workdir": str(workdir)}
    if args.cmd in ("kill", "all"):
        results["kill"] = check_kill(workdir, args.rounds)
    if args.cmd in ("concurrency", "all"):
        results["baseline_single_writer"] = check_concurrency(workdir, 1, 1, args.grades, backup=False)
        results["concurrency"] = check_concurrency(workdir, args.processes, args.threads, args.grades)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    ok = all(results.get(k, {}).get("lost", 0) == 0 for k in ("kill", "concurrency"))
    conc = results.get("concurrency")
    if conc and (conc["errors"] or conc["judgment_rows"] != conc["expected_rows"]):
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
