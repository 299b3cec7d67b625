"""The trainer worker: turns queued RL jobs into served model versions.

Loop: requeue jobs whose worker went silent, claim one queued ``rl`` job (atomic in the store, so
two workers never run the same job), run RL from the job's base version on the grades in the
store, then publish a model version folder with ``uninote.service.folders.write_version`` (the
same writer as the app's first-run build; docs/DESIGN.md "Model version folder")::

    <versions root>/.tmp-<version>-<pid>/   model/ embeddings/ index/ eval.json READY(last)
        -- rename -->  <versions root>/<version>/   -- then --  store.register_model_version(...)

The store records the folder relative to the versions root and the corpus by where it is (an
absolute path or a Hub id), so any worker that reaches both finds them. Progress and metrics
stream into the job row (``update_job``); a heartbeat thread keeps the row alive through long
phases. Any error marks the job failed with its message: a version is registered only when its
folder is complete. SIGTERM stops at the next step boundary (the RL checkpoint is kept) and marks
the job failed as interrupted. Work folders are keyed by the job's parameters, so a job retried
after a crash (``requeue_stale_jobs``) or re-queued with the same parameters resumes from its last
RL checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from annotations.errors import JobError
from uninote.data import corpus_location
from uninote.errors import ConfigError
from uninote.eval import evaluate
from uninote.model.features import embed_features_to_disk
from uninote.service import default_home
from uninote.service.folders import eval_file, resolve_path, stored_path, write_version
from uninote.train.rl import StopTraining
from uninote.train.rl_config import RLConfig
from uninote.train.rl_data import from_store
from uninote.train.rl_pipeline import run_rl

log = logging.getLogger(__name__)
RL_KEYS_IGNORED = ("base_version", "corpus", "init", "rl", "max_pairs", "eval_max_queries")


@dataclass
class WorkerConfig:
    db_url: str = field(metadata={"help": "Annotation store URL."})
    versions_root: Path | None = field(default=None, metadata={"help": (
        "Where version folders go (default: the versions/ folder beside a SQLite store, as the app "
        "lays out its home, else $UNINOTE_HOME/versions).")})
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
                           metadata={"help": "Name recorded on claimed jobs."})
    poll_seconds: float = field(default=5.0, metadata={"help": "Wait between polls when the queue is empty."})
    stale_after_s: float = field(default=600.0, metadata={"help": (
        "A running job whose worker has not heart-beaten for this long is requeued (or failed).")})
    heartbeat_s: float = field(default=15.0, metadata={"help": "Heartbeat period while a job runs."})
    device: str = field(default="auto", metadata={"help": "RL device: auto (CUDA if present), cpu, cuda."})
    eval_max_queries: int = field(default=500, metadata={"help": "Queries evaluated for eval.json (0 = skip)."})

    def resolved_versions_root(self) -> Path:
        if self.versions_root is not None:
            return Path(self.versions_root)


        url = make_url(self.db_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            beside = Path(url.database).parent / "versions"
            if beside.is_dir():
                return beside
        return default_home() / "versions"


class JobLost(Exception):
    """The job stopped being ours (requeued as stale, or finished elsewhere)."""


class TrainerWorker:
    def __init__(self, store, config: WorkerConfig):
        self.store, self.cfg = store, config
        self.root = config.resolved_versions_root()
        self.stop_requested = threading.Event()

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame):
            log.warning("signal %s: stopping after the current step", signum)
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # --- loop ----------------------------------------------------------------------------------
    def run(self, once: bool = False) -> int:
        """Process jobs until stopped (``once``: at most one job, then return). Returns jobs done."""
        done = 0
        released = self.store.release_jobs(self.cfg.worker_id)  # held by this id's previous process
        if released:
            log.info("requeued jobs %s left running by an earlier %s", released, self.cfg.worker_id)
        while not self.stop_requested.is_set():
            touched = self.store.requeue_stale_jobs(self.cfg.stale_after_s)
            if touched:
                log.info("requeued or failed stale jobs %s", touched)
            job = self.store.claim_job(self.cfg.worker_id, kinds=("rl",))
            if job is not None:
                log.info("job %d claimed by %s: %s", job.id, self.cfg.worker_id, job.params)
                self.process(job)
                done += 1
            if once:
                break
            if job is None:
                self.stop_requested.wait(self.cfg.poll_seconds)
        return done

    def process(self, job) -> None:
        """Run one claimed job to a registered version, or mark it failed."""
        lost = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job.id, lost), daemon=True)
        beat.start()
        try:
            result = self._run_job(job, lost)
            self.store.finish_job(job.id, result, worker_id=self.cfg.worker_id)
            log.info("job %d done: version %s", job.id, result["version"])
        except JobLost:
            log.warning("job %d is no longer ours; dropping it", job.id)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the job row
            message = self._describe(exc)
            log.error("job %d failed: %s", job.id, message)
            try:
                self.store.fail_job(job.id, message, worker_id=self.cfg.worker_id)
            except Exception:  # job was requeued meanwhile: nothing to mark
                log.warning("could not mark job %d failed", job.id)
            if not isinstance(exc, Exception):
                raise
        finally:
            lost.set()
            beat.join(timeout=5)

    def _describe(self, exc: BaseException) -> str:

        if isinstance(exc, StopTraining) or self.stop_requested.is_set():
            return f"interrupted (worker stopping): {exc}; the RL checkpoint is kept, re-queue to resume"
        tail = traceback.format_exception(type(exc), exc, exc.__traceback__)[-1].strip()
        return f"{type(exc).__name__}: {exc}" if str(exc) else tail

    def _heartbeat(self, job_id: int, lost: threading.Event) -> None:
        while not lost.wait(self.cfg.heartbeat_s):
            try:
                if not self.store.heartbeat(job_id, self.cfg.worker_id):
                    lost.set()
            except Exception:  # a transient DB error: try again next beat
                log.exception("heartbeat failed")

    # --- one job -------------------------------------------------------------------------------
    def _resolve_inputs(self, params: dict) -> tuple[str, str | None, str | None]:
        """(init checkpoint folder, parent version, corpus source) from job parameters: the job's
        own corpus, else the one the base version records."""

        base = params.get("base_version")
        init = params.get("init")
        if init is None:
            versions = {v.version: v for v in self.store.list_model_versions()}
            if base is None:
                active = self.store.active_version()
                base = active.version if active else None
            if base not in versions:
                raise ConfigError(f"job names base version {base!r}, which the store does not know; "
                                  f"registered: {sorted(versions)}")
            init = str(resolve_path(self.root, versions[base].path) / "model")
            corpus = params.get("corpus") or versions[base].corpus
        else:
            corpus = params.get("corpus")
        return init, base, corpus

    def _rl_config(self, params: dict):

        values = {k: v for k, v in params.items() if k not in RL_KEYS_IGNORED}
        values.update(params.get("rl", {}))
        values.setdefault("device", self.cfg.device)
        return RLConfig.from_dict({**RLConfig().to_dict(), **values})

    def _run_job(self, job, lost: threading.Event) -> dict:

        params = dict(job.params)
        init, base, corpus = self._resolve_inputs(params)
        cfg = self._rl_config(params)
        graded = from_store(self.store.url)
        if params.get("max_pairs"):
            graded = graded.head(int(params["max_pairs"]))
        if len(graded) == 0:
            raise ConfigError("no graded pairs in the store: grade some pairs before an RL run")
        key = hashlib.sha256(json.dumps([init, corpus, cfg.to_dict(), graded.fingerprint()],
                                        sort_keys=True).encode()).hexdigest()[:12]
        work = self.root / ".work" / f"rl-{key}"
        self._report(job.id, 0.02, {}, f"training RL on {len(graded)} graded pairs from {base or init}")

        def on_progress(step, total, stats):
            if lost.is_set():
                raise JobLost()
            self._report(job.id, 0.05 + 0.75 * step / total,
                         {"step": step, "steps": total, "reward": stats["reward"], "kl": stats["kl"],
                          "steps_per_second": stats["steps_per_second"]}, f"RL step {step}/{total}")

        def should_stop() -> bool:
            if lost.is_set():
                raise JobLost()
            return self.stop_requested.is_set()

        timings: dict[str, float] = {}  # wall seconds per phase: version metrics, job result (+ register_s)
        t = time.perf_counter()
        run = run_rl(init, graded, work, cfg, corpus=corpus, on_progress=on_progress, should_stop=should_stop)
        timings["rl_s"] = time.perf_counter() - t
        self._report(job.id, 0.82, {}, "re-embedding the corpus and rebuilding indexes")
        final, summary = self._write_version(run, work, params, timings)
        if lost.is_set():
            raise JobLost()
        metrics = {"rl": {k: run.metrics[k] for k in ("steps", "reward_first20", "reward_last20", "kl_last20",
                                                       "seconds", "steps_per_second", "device")},
                   "reward_data": run.metrics["reward_data"], "warnings": run.metrics["warnings"],
                   "eval": summary, "job_id": job.id}
        where = corpus_location(corpus) if corpus else str(run.corpus.root)
        metrics["timings"] = {key: round(value, 3) for key, value in timings.items()}
        t = time.perf_counter()
        self.store.register_model_version(final.name, stored_path(self.root, final), parent=base,
                                          corpus=where, metrics=metrics)
        result = {"version": final.name, "path": str(final), "parent": base, **metrics}
        result["timings"] = {**metrics["timings"], "register_s": round(time.perf_counter() - t, 3)}
        return result

    def _report(self, job_id: int, progress: float, metrics: dict, message: str) -> None:

        try:
            self.store.update_job(job_id, progress=min(progress, 1.0), metrics=metrics, message=message,
                                  worker_id=self.cfg.worker_id)
        except JobError as exc:
            raise JobLost() from exc

    def _write_version(self, run, work: Path, params: dict,
                       timings: dict | None = None) -> tuple[Path, dict]:
        """Evaluate, then publish the complete version folder; returns (folder, eval summary).
        ``timings`` gets the seconds of re-embedding (``embed_s``), evaluation (``eval_s``) and the
        rest of the publication: index build, model and folder writes (``index_write_s``)."""
        timings = {} if timings is None else timings
        t_start = time.perf_counter()

        model = run.model.cpu()
        summary: dict = {}
        max_q = int(params.get("eval_max_queries", self.cfg.eval_max_queries))

        def evaluation(embeddings) -> dict:  # on the stored (memory-mapped) embeddings
            t = time.perf_counter()
            report = evaluate(embeddings, run.corpus.qrels, dims=model.config.matryoshka_dims,
                              modalities=("note", "image"), granularities=("note",), max_queries=max_q)
            data, found = eval_file(report, run.corpus.name)
            summary.update(found)
            timings["eval_s"] = time.perf_counter() - t
            return data

        def embed(out: Path) -> None:
            t = time.perf_counter()
            embed_features_to_disk(model, run.features, out, progress=False)
            timings["embed_s"] = time.perf_counter() - t

        extras = [work / "training_config.json", work / "metrics.json", work / "reward_model"]
        final = write_version(self.root, model.version, model, embed,
                              model_files=extras, evaluation=evaluation if max_q and run.corpus.qrels else None)
        timings["index_write_s"] = (time.perf_counter() - t_start - timings.get("embed_s", 0.0)
                                    - timings.get("eval_s", 0.0))
        return final, summary
