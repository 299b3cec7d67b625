"""``uninote i2i --ray``: index parts held by Ray actors, query blocks fanned out and merged.

The embedding shards are the index parts (``uninote.index.i2i.part_bounds``); ``workers`` actors
(``IndexServer``, spread over the nodes) each open the embeddings folder by path and hold a
contiguous run of parts at the searched dim. The driver reads one query block at a time, puts it
in the object store once, asks every actor for its candidates, merges them and applies the
exclusions (``uninote.index.i2i``: the lists equal the single-process ones for ``exact`` and
``adaptive``), then writes the block's Parquet part (``I2IOutput``: temporary file, then rename).
A few blocks are in flight at once so the actors stay busy while the driver merges and writes.

Faults: the actors are created with ``max_restarts=-1`` and ``max_task_retries=-1``. A killed
worker process or node restarts the actor (elsewhere if its node is gone), which reloads its
parts, and Ray re-runs the calls it had not answered; the driver writes each block once, after
every actor answered it, so no row is lost or written twice. A killed driver leaves the parts
written so far, and a re-run with the same ``--out`` does only the missing blocks.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

import numpy as np

from uninote.cluster.connect import ClusterError, cluster_cpus, connect
from uninote.embeddings import NoteEmbeddings
from uninote.index.i2i import (SLACK, I2ISettings, IndexPart, index_bounds, merge, neighbours_of_block, part_bounds,
                               query_vectors)
from uninote.index.i2i_table import I2IOutput, id_array, job_info

IN_FLIGHT_PER_WORKER = 2  # query blocks asked ahead per actor


class IndexServer:
    """A Ray actor's state: index parts ``bounds`` of the embeddings at ``directory``."""

    def __init__(self, directory: str, bounds: list[tuple[int, int]], settings: dict, n_total: int,
                 threads: int = 1):
        from threadpoolctl import threadpool_limits

        import faiss

        threadpool_limits(threads)
        faiss.omp_set_num_threads(threads)
        self.settings = I2ISettings(**settings)
        note = NoteEmbeddings.load(directory).note
        self.parts = [IndexPart(note, a, b, self.settings, n_total)
                      for a, b in index_bounds(bounds, self.settings.strategy)]

    def where(self) -> tuple[str, int]:
        """(node id, process id) of this actor: what a fault test kills."""
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def candidates(self, queries: np.ndarray, want: int):
        s = self.settings
        keep = max(s.shortlist, want) if s.strategy == "adaptive" else want
        return merge([p.candidates(queries, want) for p in self.parts], keep)


def assign_parts(bounds: list[tuple[int, int]], workers: int) -> list[list[tuple[int, int]]]:
    """Contiguous runs of parts, one per worker, balanced by rows."""
    rows = np.cumsum([b - a for a, b in bounds])
    total = rows[-1] if len(rows) else 0
    groups: list[list[tuple[int, int]]] = [[] for _ in range(workers)]
    for (a, b), end in zip(bounds, rows):
        groups[min(workers - 1, int((end - 1) * workers // max(total, 1)))].append((a, b))
    return [g for g in groups if g]


def start_servers(ray, directory: Path, bounds, settings: I2ISettings, n_total: int, workers: int,
                  threads: int) -> list:
    actor = ray.remote(IndexServer).options(num_cpus=threads, max_restarts=-1, max_task_retries=-1,
                                            scheduling_strategy="SPREAD")
    servers = [actor.remote(str(directory.resolve()), group, settings.to_json(), n_total, threads)
               for group in assign_parts(bounds, workers)]
    ray.get([s.where.remote() for s in servers])  # every part loaded
    return servers


def i2i_on_cluster(address: str, embeddings_dir: str | Path, out: str | Path, settings: I2ISettings,
                   workers: int | None = None, threads: int = 1, progress: bool = True,
                   on_started=None) -> dict:
    """Compute the I2I table on the Ray cluster at ``address`` (see module docstring); returns
    timings. ``on_started(servers)`` is called once the actors hold their parts."""
    from tqdm.auto import tqdm

    ray = connect(address)
    start = time.perf_counter()
    emb = NoteEmbeddings.load(embeddings_dir)
    settings.validate(emb.dim)
    output = I2IOutput(out, job_info(emb, embeddings_dir, settings))
    todo = sorted(set(range(output.blocks)) - output.done())
    n, bounds = len(emb), part_bounds(emb.note)
    workers = max(1, min(workers or cluster_cpus(ray) // threads, len(bounds)))
    servers = start_servers(ray, Path(embeddings_dir), bounds, settings, n, workers, threads)
    built = time.perf_counter()
    if on_started is not None:
        on_started(servers)
    keep = (lambda want: max(settings.shortlist, want)) if settings.strategy == "adaptive" else (lambda want: want)

    def ask(queries: np.ndarray, want: int) -> list:
        ref = ray.put(queries)
        return [s.candidates.remote(ref, want) for s in servers]

    def search(queries: np.ndarray, want: int):
        return merge(_get(ray, ask(queries, want)), keep(want))

    ids, qb, pending = id_array(emb.note_ids), settings.query_block, deque()
    bar = tqdm(total=len(todo), desc="i2i (ray)", unit="block", disable=not progress)
    blocks = iter(todo)
    while True:
        while len(pending) < IN_FLIGHT_PER_WORKER * len(servers) and (block := next(blocks, None)) is not None:
            a, b = block * qb, min((block + 1) * qb, n)
            queries = query_vectors(emb.note, a, b)
            pending.append((block, a, b, queries, ask(queries, settings.k + SLACK)))
        if not pending:
            break
        block, a, b, queries, refs = pending.popleft()
        first = merge(_get(ray, refs), keep(settings.k + SLACK))
        hits = neighbours_of_block(search, queries, np.arange(a, b), settings, n, first=first)
        output.write_block(block, ids, np.arange(a, b), hits)
        bar.update(1)
    bar.close()
    output.close()
    for s in servers:
        ray.kill(s)
    end = time.perf_counter()
    return {"notes": n, "blocks": len(todo), "workers": len(servers), "build_s": built - start,
            "search_s": end - built, "total_s": end - start}


def _get(ray, refs: list):
    try:
        return ray.get(refs)
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"the cluster could not answer a query block: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
