"""``uninote worker`` (the RL trainer worker) and ``uninote simulate-annotators``."""

from __future__ import annotations

from uninote.cli.main import DefaultsHelp

WORKER_HELP = """Poll the annotation store's jobs table, claim one RL job at a time (safe with several
workers), train on CUDA when available (bf16 autocast) else CPU, stream progress and metrics into
the job row, and publish a new model version folder (model/, embeddings/, index/, eval.json,
READY last) before registering it in the store. Failed or interrupted jobs are marked failed with
their error and never register a version; a restarted worker requeues stale jobs and resumes them
from their last RL checkpoint. SIGTERM stops gracefully at the next step."""

SIMULATE_HELP = """Grade pairs with simulated annotators through the same store and label-queue API as
the app: pairs come from the model's neighbour lists (at 64 dims and full dim), grades from the
catalogue rule (fashion_grade) or the corpus qrels, with probability --error-rate replaced by a
random other grade. Then: uninote train-rl --init MODEL --db URL --out DIR."""


def register(subparsers) -> None:
    from annotations.planning import QUERY_SELECTIONS

    p = subparsers.add_parser("worker", help="RL trainer worker: jobs table -> new model versions",
                              description=WORKER_HELP, formatter_class=DefaultsHelp)
    p.add_argument("--db", required=True, help="annotation store URL (sqlite:///path.db or PostgreSQL)")
    p.add_argument("--versions-root", help="version folders root (default: $UNINOTE_HOME/versions)")
    p.add_argument("--worker-id", help="name recorded on claimed jobs, one per running worker (default: "
                                        "host-pid); a worker starting under a name requeues the jobs "
                                        "still running under it")
    p.add_argument("--once", action="store_true", help="process at most one job, then exit")
    p.add_argument("--poll-seconds", type=float, default=5.0, help="wait between polls when idle")
    p.add_argument("--stale-after", type=float, default=600.0,
                   help="seconds without heartbeat after which a running job is requeued")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="RL device")
    p.add_argument("--parent-pid", type=int,
                   help="stop (as on SIGTERM) when this process ends: the app passes its own pid for "
                        "the worker it runs")
    p.set_defaults(func=run_worker)

    s = subparsers.add_parser("simulate-annotators", help="grade queue pairs with simulated annotators",
                              description=SIMULATE_HELP, formatter_class=DefaultsHelp)
    s.add_argument("--db", required=True, help="annotation store URL")
    s.add_argument("--corpus", required=True, help="corpus folder (or any load_corpus source)")
    s.add_argument("--model", required=True, help="checkpoint folder or baseline:... whose neighbours are graded")
    s.add_argument("--pairs", type=int, default=2000, help="distinct pairs to grade")
    s.add_argument("--error-rate", type=float, default=0.0, help="probability of a random other grade")
    s.add_argument("--annotators", type=int, default=1, help="simulated annotators sharing the queue")
    s.add_argument("--seed", type=int, default=0, help="seed for query order and errors")
    s.add_argument("--depth", type=int, default=0,
                   help="neighbour list depth the queue plans from (0 = 3 x the queue's k)")
    s.add_argument("--tasks-per-query", type=int, default=10,
                   help="most pairs planned per query, random deeper draws included (0 = the queue default, 20)")
    s.add_argument("--queries-per-chunk", type=int, default=0,
                   help="queries added per queue refill (0 = pairs / tasks-per-query)")
    s.add_argument("--random-per-query", type=int, default=5,
                   help="of each query's pairs, how many are drawn at random from past the top-k")
    s.add_argument("--query-selection", default="random", choices=list(QUERY_SELECTIONS),
                   help="which notes become queries: a seeded shuffle, or one per k-means cluster "
                        "of the model's vectors")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_simulate)


def run_worker(args) -> int:
    import logging

    from annotations.store import AnnotationStore
    from uninote.worker import TrainerWorker, WorkerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = WorkerConfig(db_url=args.db, versions_root=args.versions_root, poll_seconds=args.poll_seconds,
                       stale_after_s=args.stale_after, device=args.device)
    if args.worker_id:
        cfg.worker_id = args.worker_id
    with AnnotationStore(args.db) as store:
        worker = TrainerWorker(store, cfg)
        worker.install_signal_handlers()
        if args.parent_pid:
            watch_parent(args.parent_pid, worker.stop_requested)
        done = worker.run(once=args.once)
    print(f"worker {cfg.worker_id}: processed {done} job(s)")
    return 0


def watch_parent(pid: int, stop, every_s: float = 1.0) -> None:
    """Set ``stop`` once process ``pid`` is no longer this process's parent (it exited)."""
    import os
    import threading

    def watch():
        while not stop.wait(every_s):
            if os.getppid() != pid:
                stop.set()

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def load_any_model(spec: str):
    """A UniNote checkpoint folder / Hub id, or a ``baseline:...`` spec."""
    if spec.startswith("baseline:"):
        from uninote.model.baselines import load_baseline

        return load_baseline(spec)
    from uninote.model.uninote import UniNoteModel

    return UniNoteModel.from_pretrained(spec)


def run_simulate(args) -> int:
    import json

    from tqdm.auto import tqdm

    from annotations.store import AnnotationStore
    from uninote.data import load_corpus
    from uninote.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(pairs=args.pairs, error_rate=args.error_rate, annotators=args.annotators,
                           seed=args.seed, tasks_per_query=args.tasks_per_query, depth=args.depth,
                           queries_per_chunk=args.queries_per_chunk,
                           query_selection=args.query_selection,
                           random_per_query=args.random_per_query).validate()
    corpus = load_corpus(args.corpus)
    model = load_any_model(args.model)
    embeddings = model.embed_corpus(corpus, progress=not args.quiet)
    bar = tqdm(total=cfg.pairs, desc="grading", disable=args.quiet)

    def progress(done, total):
        bar.n = done
        bar.refresh()

    with AnnotationStore(args.db) as store:
        report = simulate(store, corpus, embeddings, cfg, getattr(model, "version", None), progress)
    bar.close()
    print(json.dumps(report, indent=2))
    return 0
