"""One queued RL job through the trainer worker, end to end, timed: claim -> RL -> re-embed -> index -> registered.

The job is the one the app's "Start RL run" queues (``UniNoteService.enqueue_rl``: the active
version as base, its recorded corpus, the grades in the store), run by the worker the app starts
(``python -m uninote.cli.main worker --db ... --once --device D``, a separate process). The same
command runs it on CPU or on a GPU (``--device cuda``), so the two times sit side by side.

Inputs are copied first, so the source home is never changed and every run starts from the same
state: ``--home``'s annotation store (a consistent SQLite backup) and its active version folder go
into ``--work`` (emptied), and the job runs there.

Usage:
    python scripts/device_rl_job.py --home ~/.cache/uninote/bench-app --work ~/.cache/uninote/rl-job \\
        --device cpu --out rl-cpu.json
    python scripts/device_rl_job.py ... --device cuda --out rl-cuda.json   # the same job on a GPU

Prints (and writes to ``--out``) one JSON object: device, the job's phase seconds as the worker
records them (``timings``: rl_s, embed_s, index_write_s, eval_s, register_s), queued-to-claimed
and claimed-to-finished seconds from the job row, the worker process's wall time, the registered
version and the machine's load average. Exits non-zero when the job does not succeed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotations.store import AnnotationStore  # noqa: E402
from uninote.errors import ConfigError  # noqa: E402
from uninote.service.folders import resolve_path  # noqa: E402


def copy_home(home: Path, work: Path, db: Path | None = None) -> tuple[Path, str]:
    """``home``'s store (``db``, default ``home/annotations.db``) and active version folder into
    ``work`` (emptied); returns (the copied store, the base version)."""
    db = db or home / "annotations.db"
    if not db.is_file():
        raise ConfigError(f"{db}: no annotation store (give --home a home the app has built)")
    with AnnotationStore(f"sqlite:///{db}") as store:
        active = store.active_version()
        if active is None:
            raise ConfigError(f"{db}: no registered model version to train from")
        source = resolve_path(home / "versions", active.path)
        graded = len(store.judgments())
    if not (source / "READY").exists():
        raise ConfigError(f"{source}: version folder incomplete (no READY)")
    if graded == 0:
        raise ConfigError(f"{db}: no grades in the store: grade some pairs (or run the app's memory session) first")
    shutil.rmtree(work, ignore_errors=True)
    (work / "versions").mkdir(parents=True)
    with sqlite3.connect(db) as src, sqlite3.connect(work / "annotations.db") as dst:
        src.backup(dst)  # consistent with a running app's WAL
    shutil.copytree(source, work / "versions" / source.name)
    return work / "annotations.db", active.version


def run_job(db: Path, versions: Path, base: str, device: str, rl: dict, eval_queries: int,
            timeout_s: float) -> dict:
    url = f"sqlite:///{db}"
    with AnnotationStore(url) as store:
        corpus = {v.version: v for v in store.list_model_versions()}[base].corpus
        params = {"base_version": base, "corpus": corpus, "eval_max_queries": eval_queries, "rl": rl}
        job_id = store.enqueue_job("rl", params)  # what enqueue_rl queues, plus the schedule
    cmd = [sys.executable, "-m", "uninote.cli.main", "worker", "--db", url, "--versions-root", str(versions),
           "--device", device, "--once", "--worker-id", f"device-{device}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - t
    with AnnotationStore(url) as store:
        job = store.get_job(job_id)
        registered = {v.version: v for v in store.list_model_versions()}
    out = {"job_id": job_id, "status": job.status, "device_asked": device, "worker_wall_s": round(wall, 1),
           "worker_rc": proc.returncode, "params": params}
    if job.started_at and job.finished_at:
        out["queued_to_claimed_s"] = round(job.started_at - job.created_at, 2)
        out["claimed_to_finished_s"] = round(job.finished_at - job.started_at, 1)
    if job.status != "succeeded":
        out["error"] = job.error or proc.stderr[-2000:]
        return out
    result = job.result
    version = result["version"]
    out.update(version=version, registered=version in registered,
               ready=(resolve_path(versions, registered[version].path) / "READY").exists()
               if version in registered else False,
               timings=result.get("timings", {}), rl=result["rl"], eval=result.get("eval", {}),
               pairs=result["reward_data"].get("pairs"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, type=Path, help="a home the app built (store + active version)")
    ap.add_argument("--db", type=Path, help="its SQLite store (default: <home>/annotations.db)")
    ap.add_argument("--work", required=True, type=Path, help="folder the job runs in (emptied first)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="RL device of the worker")
    ap.add_argument("--steps", type=int, help="RL steps of the job (default: the app's job, RLConfig's 600)")
    ap.add_argument("--rl", default="{}", help="more RL settings as JSON (RLConfig keys)")
    ap.add_argument("--eval-queries", type=int, default=200, help="queries of the version's eval.json (0 = none)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds the worker may take")
    ap.add_argument("--out", type=Path, help="also write the result here")
    args = ap.parse_args()
    try:
        rl = json.loads(args.rl)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--rl is not JSON: {exc}")
    if args.steps:
        rl["steps"] = args.steps
    db, base = copy_home(args.home.expanduser(), args.work.expanduser(), args.db)
    result = run_job(db, args.work.expanduser() / "versions", base, args.device, rl, args.eval_queries,
                     args.timeout)
    if args.device != "cpu":
        import torch

        result["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    result["loadavg"] = open("/proc/loadavg").read().split()[:3]
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text)
    return 0 if result["status"] == "succeeded" and result.get("registered") else 1


if __name__ == "__main__":
    sys.exit(main())
