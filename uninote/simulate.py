"""Simulated annotators: grade pairs through the same store and queue API the app uses.

Pairs come from the label queue, built (``annotations.queue.LabelQueue.add_from_neighbours``)
from the model's own neighbour lists at a small and the full dim, ``depth`` deep (3k by default, so
the queue's random source can draw candidates the model ranks too low). Each simulated annotator leases
the next task, looks up the true grade -- the catalogue rule ``fashion_grade`` when both notes carry
catalogue attributes, else the corpus qrels (0 when absent) -- and, with probability
``error_rate``, submits a uniformly random *other* grade instead. Queries are added to the queue
in chunks (random order, seeded) until ``pairs`` distinct pairs are graded. Notes that already have
tasks as queries are not planned again, so a second run -- e.g. with the model RL trained on the
first run's grades, as the app's queue refills from the active version -- grades new queries.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

import numpy as np

from annotations.planning import QUERY_SELECTIONS, choose_queries
from annotations.queue import LabelQueue, QueueConfig
from uninote.data.fashion import fashion_grade
from uninote.errors import ConfigError
from uninote.embeddings import truncate
from uninote.index.scoring import top_k
from uninote.index.vectors import source_rows

GRADES = (0, 1, 2, 3)


@dataclass
class SimulationConfig:
    pairs: int = field(default=2000, metadata={"help": "Distinct (query, candidate) pairs to grade."})
    error_rate: float = field(default=0.0, metadata={"help": (
        "Probability that a grader submits a random other grade instead of the true one.")})
    annotators: int = field(default=1, metadata={"help": "How many simulated annotators share the queue."})
    k: int = field(default=10, metadata={"help": "Top-k the queue treats as shown."})
    depth: int = field(default=0, metadata={"help": (
        "Neighbour list depth the queue plans from (0 = 3k): its random source draws past the top-k.")})
    dims: list[int] = field(default_factory=lambda: [64, 0], metadata={"help": (
        "Embedding dims of the neighbour lists the queue compares (0 = full dim).")})
    overlap: float = field(default=0.2, metadata={"help": "Share of tasks graded by two annotators (when K > 1)."})
    queries_per_chunk: int = field(default=0, metadata={"help": (
        "Queries added per queue refill (0 = pairs / tasks_per_query, or pairs / 10 without it).")})
    tasks_per_query: int = field(default=10, metadata={"help": (
        "Most pairs the queue plans per query: its highest-priority ones plus the random deeper draws "
        "(0 = the queue's default, 20). 10 = 5 near the top + 5 drawn from ranks k..depth, so every "
        "query gets its deep draws graded; fewer per query spread the budget over more queries.")})
    random_per_query: int = field(default=5, metadata={"help": (
        "Of each query's pairs, how many the queue draws at random from past the top-k (the rest are its "
        "highest-priority pairs near the top).")})
    query_selection: str = field(default="random", metadata={"help": (
        "Which notes become queries first: 'random' (a seeded shuffle) or 'coverage' (one per k-means "
        "cluster of the model's note vectors, larger clusters first; annotations.planning.choose_queries).")})
    seed: int = field(default=0, metadata={"help": "Seed for query order and grader errors."})

    def validate(self) -> "SimulationConfig":
        if self.pairs < 1 or self.annotators < 1 or self.k < 1:
            raise ConfigError("simulate: --pairs, --annotators and --k must be >= 1")
        if self.depth and self.depth < self.k:
            raise ConfigError(f"simulate: --depth {self.depth} must be >= --k {self.k} (or 0 for 3k)")
        if self.queries_per_chunk < 0 or self.tasks_per_query < 0 or self.random_per_query < 0:
            raise ConfigError("simulate: --queries-per-chunk, --tasks-per-query and --random-per-query must be >= 0")
        if self.query_selection not in QUERY_SELECTIONS:
            raise ConfigError(f"simulate: --query-selection must be one of {QUERY_SELECTIONS}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ConfigError(f"simulate: --error-rate {self.error_rate} must be in [0, 1]")
        return self


def true_grade(corpus, query_id: str, candidate_id: str) -> int:
    """The catalogue rule when both notes have ``articleType``, else the corpus qrels (default 0)."""
    a, b = corpus.get(query_id).meta, corpus.get(candidate_id).meta
    if "articleType" in a and "articleType" in b:
        return int(fashion_grade(a, b))
    return int(corpus.qrels.get(query_id, {}).get(candidate_id, 0))


def noisy_grade(grade: int, error_rate: float, rng: random.Random) -> int:
    """``grade``, or with probability ``error_rate`` a uniformly random other grade."""
    if rng.random() < error_rate:
        return rng.choice([g for g in GRADES if g != grade])
    return grade


def neighbour_lists(embeddings, query_ids: list[str], dims: list[int], depth: int,
                    block_rows: int = 65_536) -> dict[str, dict[str, list[str]]]:
    """``{setting key: {query: [top-depth note ids]}}`` by exact note-to-note cosine at each dim.

    The notes are scanned ``block_rows`` at a time (memory-mapped versions are never read whole);
    each block keeps its own top ``depth + 1`` (ties by lower row), so the merge is exact."""
    out = {}
    rows = [embeddings.row(q) for q in query_ids]
    n = len(embeddings)
    for dim in sorted({min(d, embeddings.dim) if d else embeddings.dim for d in dims}):
        cut = (lambda x: x) if dim == embeddings.dim else (lambda x: truncate(x, dim))  # noqa: E731
        queries = cut(source_rows(embeddings.note, np.asarray(rows, np.int64)))
        found = [([], []) for _ in rows]
        for start in range(0, n, block_rows):
            block = cut(source_rows(embeddings.note, slice(start, min(start + block_rows, n))))
            for (ids, scores), s in zip(found, queries @ block.T):
                best = top_k(s, depth + 1)
                ids.append(best + start)
                scores.append(s[best])
        key = f"dim={'full' if not dim or dim == embeddings.dim else dim}/granularity=note/strategy=exact"
        out[key] = {}
        for q, r, (ids, scores) in zip(query_ids, rows, found):
            ids, scores = np.concatenate(ids), np.concatenate(scores)
            out[key][q] = [embeddings.note_ids[ids[i]] for i in top_k(scores, depth, exclude=np.flatnonzero(ids == r))]
    return out


def simulate(store, corpus, embeddings, config: SimulationConfig, model_version: str | None = None,
             progress=None) -> dict:
    """Grade ``config.pairs`` distinct pairs into ``store``; returns a report (counts, error rate)."""
    cfg = config.validate()
    store.register_notes(corpus.name, corpus.notes)
    per_query = {"max_tasks_per_query": cfg.tasks_per_query} if cfg.tasks_per_query else {}
    queue = LabelQueue(store, QueueConfig(k=cfg.k, overlap=cfg.overlap if cfg.annotators > 1 else 0.0,
                                          seed=cfg.seed, random_per_query=cfg.random_per_query, **per_query))
    names = [f"sim-{i}" for i in range(cfg.annotators)]
    rng = random.Random(cfg.seed)
    chunk = cfg.queries_per_chunk or max(1, math.ceil(cfg.pairs / (cfg.tasks_per_query or 10)))
    done = queue.queries()  # notes that were queries before (an earlier run, another model): new ones first
    fresh = [i for i in embeddings.note_ids if i not in done]
    rows = [embeddings.row(i) for i in fresh]
    order = choose_queries(embeddings.note[rows], fresh, chunk, cfg.query_selection, cfg.seed)
    graded: set[tuple[str, str]] = {(j.query_id, j.candidate_id) for j in store.judgments()}
    start_pairs = len(graded)
    submitted = flipped = next_query = 0
    while len(graded) - start_pairs < cfg.pairs:
        task, who = None, None
        for name in names[submitted % len(names):] + names[: submitted % len(names)]:
            task = queue.next_task(name)
            if task is not None:
                who = name
                break
        if task is None:
            if next_query >= len(order):
                break  # every note has been a query: the corpus cannot give more pairs
            queries = order[next_query: next_query + chunk]
            next_query += len(queries)
            queue.add_from_neighbours(neighbour_lists(embeddings, queries, cfg.dims, cfg.depth or 3 * cfg.k), model_version)
            continue
        truth = true_grade(corpus, task.query_id, task.candidate_id)
        grade = noisy_grade(truth, cfg.error_rate, rng)
        flipped += grade != truth
        queue.submit(who, task, grade)
        submitted += 1
        graded.add((task.query_id, task.candidate_id))
        if progress is not None:
            progress(len(graded) - start_pairs, cfg.pairs)
    counts = {g: 0 for g in GRADES}
    for j in store.judgments():
        counts[j.grade] += 1
    return {"pairs": len(graded) - start_pairs, "grades_submitted": submitted,
            "observed_error_rate": flipped / max(submitted, 1), "queries_used": next_query,
            "grade_counts": counts, "config": asdict(cfg), "model_version": model_version,
            "corpus": corpus.name}
