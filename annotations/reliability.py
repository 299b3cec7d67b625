"""Reliability checks of the annotation store: crash safety, concurrency, online backup.

- ``check_kill``: a child process streams grade writes and prints each id to a pipe only after its
  commit; the parent SIGKILLs it mid-stream, then checks every acknowledged grade is in the
  database and ``PRAGMA integrity_check`` passes.
- ``check_concurrency``: P processes x T threads (each thread one annotator) grade the same pairs,
  each grade submitted twice (double click); the database must end with exactly one row per
  (annotator, pair) and no write may fail ("database is locked" or anything else). Reports write
  latency p50/p95. With ``backup=True``, ``store.backup`` runs while the writers do; the copy must
  pass integrity_check and open.

``scripts/annotations_reliability.py`` runs them at full size; the writer child is this module
(``python -m annotations.reliability writer ...``).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from annotations.backup import integrity_check
from annotations.store import AnnotationStore
from uninote.data.note import Note

ROOT = Path(__file__).resolve().parents[1]  # the child imports the same checkout as its parent
N_NOTES = 101  # note q0 is graded against c1..c100


def setup_db(path: Path) -> AnnotationStore:
    store = AnnotationStore(str(path))
    store.register_notes("reliability", [Note("q0")] + [Note(f"c{i}") for i in range(1, N_NOTES)])
    return store


def pair(i: int) -> tuple[str, str, int]:
    """The i-th pair a writer grades (cycles over the candidates; grade from the index)."""
    return "q0", f"c{1 + i % (N_NOTES - 1)}", i % 4


# -- child: a writer process -----------------------------------------------------------------
def run_writer(args) -> int:
    store = AnnotationStore(args.db)
    lock = threading.Lock()

    def work(thread: int) -> None:
        name = f"{args.annotator}-t{thread}"
        for i in range(args.grades):
            q, c, g = pair(i)
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                try:
                    store.submit_grade(name, q, c, g, dim=64, strategy="exact")
                except Exception as exc:  # reported, never hidden
                    with lock:
                        print(f"err {name} {type(exc).__name__}: {exc}", flush=True)
                    continue
                ms = (time.perf_counter() - t0) * 1000
                with lock:  # acknowledged only after commit returned
                    print(f"ack {name} {q} {c} {g} {ms:.3f}", flush=True)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


def spawn_writer(db: Path, annotator: str, grades: int, threads: int = 1, repeat: int = 1):
    cmd = [sys.executable, "-m", "annotations.reliability", "writer", "--db", str(db), "--annotator", annotator,
           "--grades", str(grades), "--threads", str(threads), "--repeat", str(repeat)]  # fmt: skip
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def parse(lines: list[str]) -> tuple[list[tuple], list[float], list[str]]:
    acks, latencies, errors = [], [], []
    for line in lines:
        parts = line.split()
        if parts[:1] == ["ack"] and len(parts) == 6:
            acks.append((parts[1], parts[2], parts[3], int(parts[4])))
            latencies.append(float(parts[5]))
        elif parts[:1] == ["err"]:
            errors.append(line.strip())
    return acks, latencies, errors


def missing_acks(store: AnnotationStore, acks: list[tuple]) -> list[tuple]:
    stored = {(j.annotator, j.query_id, j.candidate_id): j.grade for j in store.judgments()}
    return [a for a in acks if stored.get(a[:3]) != a[3]]


# -- checks ----------------------------------------------------------------------------------
def check_kill(workdir: Path, rounds: int = 3, kill_after: int = 40, grades: int = 100_000) -> dict:
    """SIGKILL a writer mid-stream ``rounds`` times; every acknowledged grade must survive."""
    db = workdir / "kill.db"
    setup_db(db).close()
    total_acked, lost, results = 0, 0, []
    rng = random.Random(0)
    for r in range(rounds):
        proc = spawn_writer(db, f"killed{r}", grades, threads=1)
        acked = []
        while len(acked) < kill_after + 7 * r:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(line)
        time.sleep(rng.uniform(0, 0.01))  # land the kill at a random point of a write
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)  # acks already in the pipe still count
        acks, _, errors = parse(acked + rest.splitlines())
        with AnnotationStore(str(db)) as store:
            gone = missing_acks(store, acks)
            stored = len(store.judgments(annotator=f"killed{r}-t0"))
        total_acked += len(acks)
        lost += len(gone)
        results.append({"acked": len(acks), "lost": len(gone), "errors": len(errors),
                        "committed_unacked": stored - len(acks) + len(gone),
                        "returncode": proc.returncode})  # fmt: skip
    return {"rounds": results, "acked": total_acked, "lost": lost,
            "integrity_check": integrity_check(db)}  # fmt: skip


def check_concurrency(workdir: Path, processes: int = 10, threads: int = 2, grades: int = 50,
                      repeat: int = 2, backup: bool = True) -> dict:
    """``processes`` x ``threads`` writers, each grading ``grades`` pairs ``repeat`` times."""
    db = workdir / f"conc-{processes}x{threads}.db"
    setup_db(db).close()
    t0 = time.perf_counter()
    procs = [spawn_writer(db, f"p{i}", grades, threads, repeat) for i in range(processes)]
    backup_report = None
    if backup:
        with AnnotationStore(str(db)) as store:
            deadline = time.time() + 60  # back up mid-stream: once some grades are in
            while store.counts()["judgments"] < processes * threads * grades // 5 and time.time() < deadline:
                time.sleep(0.02)
            tb = time.perf_counter()
            dest = store.backup(workdir / f"backup-{processes}x{threads}.db")
            backup_s = time.perf_counter() - tb
        with AnnotationStore(str(dest)) as copy:
            rows_in_copy = copy.counts()["judgments"]
        backup_report = {"seconds": round(backup_s, 3), "rows_in_copy": rows_in_copy,
                         "integrity_check": integrity_check(dest)}  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    wall = time.perf_counter() - t0
    acks, lat, errors = parse([line for out, _ in outs for line in out.splitlines()])
    errors += [e.strip() for _, err in outs for e in err.splitlines() if "Error" in e]
    with AnnotationStore(str(db)) as store:
        counts = store.counts()
        gone = missing_acks(store, acks)
    expected = processes * threads * grades
    return {
        "writers": processes * threads, "processes": processes, "threads": threads,
        "grades_per_writer": grades, "submissions": len(acks), "expected_rows": expected,
        "judgment_rows": counts["judgments"], "history_rows": counts["judgment_history"],
        "lost": len(gone), "errors": len(errors),
        "locked_errors": sum("locked" in e for e in errors), "error_samples": errors[:3],
        "latency_ms_p50": round(statistics.median(lat), 2) if lat else None,
        "latency_ms_p95": round(statistics.quantiles(lat, n=20)[-1], 2) if len(lat) > 1 else None,
        "wall_s": round(wall, 2), "backup": backup_report, "integrity_check": integrity_check(db),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """The writer child: stream grade writes, print each ack after its commit."""
    parser = argparse.ArgumentParser(description="(internal) the writer process of the reliability checks")
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("writer", help="stream grade writes, print acks after commit")
    w.add_argument("--db", required=True)
    w.add_argument("--annotator", required=True)
    w.add_argument("--grades", type=int, default=50)
    w.add_argument("--threads", type=int, default=1)
    w.add_argument("--repeat", type=int, default=1)
    return run_writer(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
