"""Benchmark: synthetic vectors stored on disk as shards, searched with a shortlist + memmap re-rank.

Per corpus size N (see uninote/index/synthetic.py for the vectors):

1. The full-dim (768) table is written once as shards (``uninote.shards``, float16 by default) under
   ``work/synthetic-n<N>-...``; a rerun reuses it, an interrupted write resumes at the first
   missing shard. The write streams 65,536-row chunks, so its memory does not grow with N.
2. One pass over the shards (65,536 rows at a time) computes the ground truth (exact top-10 at the full dim over the
   stored vectors, for every query) and fills the shortlist index: an IVF (flat codes, HNSW coarse
   quantizer) on the re-normalised 64-d prefix, trained on a sample first.
3. ``adaptive`` search: IVF shortlist of K' rows at 64 dims, exact re-rank of those rows at the full
   dim read from the memory-mapped shards. Measured twice on one thread: with the shard files
   dropped from the page cache first (cold: every re-ranked row is a disk read) and again (warm).

Memory is reported as peak ``RssAnon`` (anonymous memory: the page cache of the memory-mapped
files does not count) sampled every 20 ms through each phase.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uninote.bench.machine import cpu_count, threads
from uninote.bench.measure import recall_at_k
from uninote.embeddings import l2_normalize, truncate
from uninote.index.synthetic import CHUNK, SyntheticSpec, centres_block, iter_chunks, synthetic_vectors
from uninote.shards import ShardedArray, ShardWriter, open_shards

log = logging.getLogger(__name__)
K = 10


@dataclass
class OnDiskBenchConfig:
    """What the on-disk benchmark builds and measures."""

    sizes: list[int] = field(default_factory=lambda: [1_000_000])  # corpus sizes N
    work: Path = Path.home() / ".cache/uninote/bench"  # shards (and nothing else) are cached here
    dtype: str = "float16"  # storage dtype of the full-dim vectors
    shard_rows: int = 4 * CHUNK  # rows per shard (a multiple of the generator's chunk)
    shortlist_dim: int = 64  # dim of the shortlist index (the Matryoshka prefix)
    shortlists: list[int] = field(default_factory=lambda: [200])  # K' sweep
    nprobe: list[int] = field(default_factory=lambda: [32, 64])  # IVF cells visited sweep
    nlist: int = 0  # IVF cells; 0 = 4 * sqrt(N)
    train_per_cell: int = 30  # k-means sample = train_per_cell * nlist rows
    n_queries: int = 200  # queries (exact full-dim truth for every one)
    in_ram_baseline: bool = True  # also time float32 in RAM (exact 64-d shortlist, in-RAM re-rank)
    full_dim: int = 768
    seed: int = 0

    def validate(self) -> "OnDiskBenchConfig":
        from uninote.errors import ConfigError

        if self.shard_rows % CHUNK:
            raise ConfigError(f"shard_rows must be a multiple of {CHUNK}")
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"dtype must be float16 or float32, got {self.dtype!r}")
        if not 1 <= self.shortlist_dim < self.full_dim:
            raise ConfigError(f"shortlist_dim must be in 1..{self.full_dim - 1}")
        return self


class AnonPeak:
    """Peak ``RssAnon`` of this process (bytes) while the block runs, sampled every ``every`` s."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self._stop = every, 0, threading.Event()

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(self.every)

    def __enter__(self) -> "AnonPeak":
        self.peak = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def shard_folder(cfg: OnDiskBenchConfig, spec: SyntheticSpec) -> Path:
    return Path(cfg.work) / (f"synthetic-n{spec.n}-d{spec.full_dim}-{cfg.dtype}-s{spec.seed}-noise{spec.noise}-"
                             f"tau{spec.decay_tau}-rows{cfg.shard_rows}")


def write_synthetic_shards(cfg: OnDiskBenchConfig, spec: SyntheticSpec) -> tuple[Path, float]:
    """The shard folder of the synthetic table (written, resumed or reused) and the write seconds."""
    folder = shard_folder(cfg, spec)
    if (folder / "manifest.json").is_file() and open_shards(folder, allow_incomplete=True).manifest["complete"]:
        return folder, 0.0
    t = time.perf_counter()
    writer = ShardWriter(folder, {"note": cfg.dtype}, meta={"synthetic": vars(spec)}, resume=True)
    first = writer.rows_done("note")
    if first:
        log.info("N=%d: resuming at shard %d (row %d)", spec.n, writer.done, first)
    for start in range(first, spec.n, cfg.shard_rows):
        stop = min(start + cfg.shard_rows, spec.n)
        block = np.empty((stop - start, spec.full_dim), cfg.dtype)
        for row, chunk in iter_chunks(spec, spec.full_dim, n=stop, first=start):
            block[row - start: row - start + len(chunk)] = chunk
        writer.write({"note": block})
        log.info("N=%d: wrote shard %d (%d rows)", spec.n, writer.done - 1, stop - start)
    writer.close()
    centres_block.cache_clear()
    return folder, time.perf_counter() - t


def _shard_arrays(x) -> list[tuple[int, np.ndarray]]:
    return list(x.blocks()) if isinstance(x, ShardedArray) else [(0, x)]


def build_and_truth(cfg: OnDiskBenchConfig, x, queries: np.ndarray, nlist: int):
    """One pass over the shards: the exact full-dim top-k of ``queries`` and the prefix IVF index."""
    import faiss

    n, lo = len(x), cfg.shortlist_dim
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(n, min(n, cfg.train_per_cell * nlist), replace=False))
    quantizer = faiss.IndexHNSWFlat(lo, 32, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexIVFFlat(quantizer, lo, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter, index.cp.seed, index.cp.min_points_per_centroid = 10, cfg.seed, 5
    index.cp.spherical = True  # inner product on unit vectors: keep the centroids on the sphere
    t = time.perf_counter()
    train = l2_normalize(x.take(sample, slice(0, lo)) if isinstance(x, ShardedArray) else x[sample][:, :lo])
    index.train(train)
    del train
    train_s = time.perf_counter() - t
    quantizer.hnsw.efSearch = 128
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    fill_s = 0.0
    t = time.perf_counter()
    for start, part in _shard_arrays(x):
        for s in range(0, len(part), CHUNK):
            block = np.asarray(part[s:s + CHUNK], dtype=np.float32)
            t_add = time.perf_counter()
            index.add(l2_normalize(block[:, :lo]))
            fill_s += time.perf_counter() - t_add
            scores = np.concatenate([best_s, queries @ block.T], axis=1)
            rows = np.concatenate([best_i, np.broadcast_to(np.arange(start + s, start + s + len(block)),
                                                           (len(queries), len(block)))], axis=1)
            top = np.argpartition(-scores, K - 1, axis=1)[:, :K]
            best_s, best_i = np.take_along_axis(scores, top, 1), np.take_along_axis(rows, top, 1)
    truth_s = time.perf_counter() - t - fill_s
    truth = np.take_along_axis(best_i, np.argsort(-best_s, axis=1, kind="stable"), 1)
    return index, truth, train_s, fill_s, truth_s


def drop_page_cache(folder: Path) -> None:
    """Ask the kernel to drop the cached pages of this folder's files (only these files)."""
    for path in folder.rglob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def rerank(x, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The top-k of ``rows`` by exact full-dim score, reading only those rows from ``x``."""
    rows = rows[rows >= 0]
    order = np.sort(rows)  # ascending rows: sequential page access within each shard
    vecs = x.take(order) if isinstance(x, ShardedArray) else x[order]
    scores = vecs.astype(np.float32) @ query
    top = np.argpartition(-scores, min(K, len(scores)) - 1)[:K]
    return order[top[np.argsort(-scores[top], kind="stable")]]


def time_queries(search, n_queries: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(latencies ms, found rows, QPS) running the queries one by one on this thread."""
    lat, found = [], []
    t0 = time.perf_counter()
    for i in range(n_queries):
        t = time.perf_counter()
        found.append(np.pad(search(i), (0, K))[:K])
        lat.append(time.perf_counter() - t)
    return np.array(lat) * 1e3, np.array(found), n_queries / (time.perf_counter() - t0)


def _row(n, strategy, store, index, lat, found, qps, truth, **extra) -> dict:
    return {"n": n, "strategy": strategy, "store": store, "index": index, "threads": 1,
            "recall@10": recall_at_k(found, truth), "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "qps": qps, **extra}


def run_size(n: int, cfg: OnDiskBenchConfig) -> list[dict]:
    spec = SyntheticSpec(n, full_dim=cfg.full_dim, seed=cfg.seed)
    lo = cfg.shortlist_dim
    with AnonPeak() as gen_peak, threads(cpu_count()):
        folder, write_s = write_synthetic_shards(cfg, spec)
    shards = open_shards(folder)
    disk = shards.disk_bytes("note")
    log.info("N=%d: shards %s (%.2f GB, written in %.0f s; 0 = reused)", n, folder, disk / 1e9, write_s)
    queries = synthetic_vectors(spec, cfg.full_dim, "query", cfg.n_queries)
    q_lo = truncate(queries, lo)
    nlist = cfg.nlist or int(4 * math.sqrt(n))
    with AnonPeak() as open_peak:
        x = shards.array("note")
    with AnonPeak() as build_peak, threads(cpu_count()):
        index, truth, train_s, fill_s, truth_s = build_and_truth(cfg, x, queries, nlist)
    log.info("N=%d: IVF%d on %d-d trained in %.0f s, filled in %.0f s (+ %.0f s reading shards and exact truth)",
             n, nlist, lo, train_s, fill_s, truth_s)
    common = {"disk_gb": disk / 1e9, "write_s": write_s, "train_s": train_s, "fill_s": fill_s, "truth_s": truth_s,
              "index_ram_gb": (n * (lo * 4 + 8)) / 1e9, "peak_anon_gb_write": gen_peak.peak / 1e9,
              "peak_anon_gb_build": build_peak.peak / 1e9, "anon_gb_after_open": open_peak.peak / 1e9}
    out = []
    for nprobe in cfg.nprobe:
        index.nprobe = nprobe
        for shortlist in cfg.shortlists:
            def search(i, shortlist=shortlist):
                rows = index.search(q_lo[i:i + 1], shortlist)[1][0]
                return rerank(x, rows, queries[i])

            label = f"ivf{nlist},flat@{lo} (hnsw quantizer) nprobe={nprobe} K'={shortlist} rerank@{cfg.full_dim}"
            with threads(1):
                for phase in ("cold", "warm"):
                    if phase == "cold":
                        drop_page_cache(folder)
                    with AnonPeak() as peak:
                        lat, found, qps = time_queries(search, cfg.n_queries)
                    out.append(_row(n, "adaptive", f"memmap {cfg.dtype}", label, lat, found, qps, truth,
                                    cache=phase, peak_anon_gb_search=peak.peak / 1e9, **common))
                    log.info("N=%d %s %s: recall %.3f p50 %.2f ms QPS %.0f anon %.2f GB", n, label, phase,
                             out[-1]["recall@10"], out[-1]["p50_ms"], qps, peak.peak / 1e9)
    if cfg.in_ram_baseline:
        out += in_ram_baseline(cfg, x, queries, truth, index, nlist)
    return out


def in_ram_baseline(cfg: OnDiskBenchConfig, x, queries, truth, index, nlist) -> list[dict]:
    """The same queries with the full-dim vectors as float32 in RAM (how the index held them before)."""
    n, lo = len(x), cfg.shortlist_dim
    with AnonPeak() as peak:
        full = np.empty((n, cfg.full_dim), np.float32)
        for start, part in _shard_arrays(x):
            for s in range(0, len(part), CHUNK):
                full[start + s: start + s + CHUNK] = part[s:s + CHUNK]
        low = truncate(full[:, :lo], lo)
        q_lo = truncate(queries, lo)
        rows_out = []
        with threads(1):
            def exact_short(i, shortlist=cfg.shortlists[0]):
                short = np.argpartition(-(low @ q_lo[i]), shortlist - 1)[:shortlist]
                return rerank(full, short, queries[i])

            lat, found, qps = time_queries(exact_short, cfg.n_queries)
            rows_out.append(_row(n, "adaptive", "RAM float32", f"numpy exact {lo}->{cfg.full_dim} "
                                 f"K'={cfg.shortlists[0]}", lat, found, qps, truth))
            index.nprobe = cfg.nprobe[-1]

            def ivf_short(i, shortlist=cfg.shortlists[0]):
                return rerank(full, index.search(q_lo[i:i + 1], shortlist)[1][0], queries[i])

            lat, found, qps = time_queries(ivf_short, cfg.n_queries)
            rows_out.append(_row(n, "adaptive", "RAM float32", f"ivf{nlist},flat@{lo} nprobe={cfg.nprobe[-1]} "
                                 f"K'={cfg.shortlists[0]} rerank@{cfg.full_dim}", lat, found, qps, truth))
    for r in rows_out:
        r["peak_anon_gb_search"] = peak.peak / 1e9
        log.info("N=%d %s RAM: recall %.3f p50 %.2f ms QPS %.0f", n, r["index"], r["recall@10"], r["p50_ms"], r["qps"])
    return rows_out


def markdown(rows: list[dict]) -> str:
    cols = [("n", "N"), ("store", "vectors"), ("index", "search"), ("cache", "page cache"),
            ("recall@10", "R@10 vs exact 768"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("qps", "QPS (1 thread)"),
            ("peak_anon_gb_search", "peak RssAnon GB (search)"), ("peak_anon_gb_build", "peak RssAnon GB (build)"),
            ("disk_gb", "disk GB"), ("write_s", "write s"), ("train_s", "IVF train s"), ("fill_s", "IVF fill s"), ("truth_s", "read + exact truth s")]

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}" if v < 10 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)


def run_ondisk(cfg: OnDiskBenchConfig, out: str | None = None) -> list[dict]:
    cfg.validate()
    rows = []
    for n in cfg.sizes:
        rows += run_size(n, cfg)
        if out:  # written after every size so a long run keeps what it measured
            Path(out).write_text(json.dumps(rows, indent=1))
    return rows
