"""Benchmark: synthetic vectors stored on disk as shards, searched with a shortlist + memmap re-rank.

Per corpus size N (see uninote/index/synthetic.py for the vectors):

1. The full-dim (768) table is written once as shards (``uninote.shards``, float16 by default) under
   ``work/synthetic-n<N>-...``; a rerun reuses it, an interrupted write resumes at the first
   missing shard. The write streams 65,536-row chunks, so its memory does not grow with N.
2. One pass over the shards (65,536 rows at a time) computes the ground truth (exact top-10 at the
   full dim over the stored vectors, for every query) and fills the shortlist index on the
   re-normalised 64-d prefix: HNSW (default), IVF (flat codes, HNSW coarse quantizer, trained on a
   sample first) or a flat exact scan of the prefix (faiss ``IndexFlatIP``: N x 64 x 4 bytes of
   RAM). Index and truth are cached beside the shards.
3. ``adaptive`` search: a shortlist of K' rows from that index at 64 dims, exact re-rank of those rows at the full
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
from uninote.index.synthetic import CHUNK, SyntheticSpec, centres_block, chunk_into, synthetic_vectors
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
    index: str = "hnsw"  # shortlist index on the prefix: hnsw, ivf (IVF flat, HNSW quantizer) or flat (exact scan)
    hnsw_m: int = 16  # HNSW links per vector
    ef_construction: int = 40  # HNSW build beam
    ef_search: list[int] = field(default_factory=lambda: [200, 300, 400])  # HNSW query beam sweep (>= K')
    nprobe: list[int] = field(default_factory=lambda: [32, 64])  # IVF cells visited sweep
    nlist: int = 0  # IVF cells; 0 = 4 * sqrt(N)
    train_per_cell: int = 30  # k-means sample = train_per_cell * nlist rows
    n_queries: int = 200  # queries (exact full-dim truth for every one)
    in_ram_baseline: bool = True  # also time float32 in RAM (exact 64-d shortlist, in-RAM re-rank)
    ram_baseline_max_gb: float = 8.0  # ... only where the float32 table (N x D x 4 bytes) fits in this
    full_dim: int = 768
    seed: int = 0

    def validate(self) -> "OnDiskBenchConfig":
        from uninote.errors import ConfigError

        if self.shard_rows % CHUNK:
            raise ConfigError(f"shard_rows must be a multiple of {CHUNK}")
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"dtype must be float16 or float32, got {self.dtype!r}")
        if self.index not in ("hnsw", "ivf", "flat"):
            raise ConfigError(f"shortlist index must be hnsw, ivf or flat, got {self.index!r}")
        if not 1 <= self.shortlist_dim < self.full_dim:
            raise ConfigError(f"shortlist_dim must be in 1..{self.full_dim - 1}")
        return self


def _anon(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # a child that has just exited
        pass
    return 0


class AnonPeak:
    """Peak ``RssAnon`` (bytes) of this process plus its child processes (the generator's workers)
    while the block runs, sampled every ``every`` s."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self._stop = every, 0, threading.Event()

    @staticmethod
    def now() -> int:
        import psutil

        return _anon("self") + sum(_anon(c.pid) for c in psutil.Process().children(recursive=True))

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


_SHARD_BUFFERS: list[np.ndarray] = []  # set before the generator's worker processes fork


def _fill_chunk(job: tuple) -> None:
    spec, buf, offset, start, rows = job
    chunk_into(spec, spec.full_dim, start, _SHARD_BUFFERS[buf][offset:offset + rows])


def write_synthetic_shards(cfg: OnDiskBenchConfig, spec: SyntheticSpec, workers: int = 1) -> tuple[Path, float]:
    """The shard folder of the synthetic table (written, resumed or reused) and the write seconds.

    With ``workers`` > 1 the 65,536-row chunks of a shard are generated by that many forked
    processes into a shared buffer (two buffers: the next shard is generated while this one is
    written and checksummed); the rows are the same for any ``workers``."""
    import mmap
    import multiprocessing

    folder = shard_folder(cfg, spec)
    if (folder / "manifest.json").is_file() and open_shards(folder, allow_incomplete=True).manifest["complete"]:
        return folder, 0.0
    t = time.perf_counter()
    writer = ShardWriter(folder, {"note": cfg.dtype}, meta={"synthetic": vars(spec)}, resume=True)
    first = writer.rows_done("note")
    if first:
        log.info("N=%d: resuming at shard %d (row %d)", spec.n, writer.done, first)
    starts = list(range(first, spec.n, cfg.shard_rows))
    row_bytes = spec.full_dim * np.dtype(cfg.dtype).itemsize
    _SHARD_BUFFERS[:] = [np.frombuffer(mmap.mmap(-1, cfg.shard_rows * row_bytes), cfg.dtype)
                         .reshape(cfg.shard_rows, spec.full_dim) for _ in range(2)]

    def jobs(i: int) -> list[tuple]:
        start = starts[i]
        stop = min(start + cfg.shard_rows, spec.n)
        return [(spec, i % 2, s - start, s, min(CHUNK, stop - s)) for s in range(start, stop, CHUNK)]

    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 and len(starts) else None
    try:
        pending = pool.map_async(_fill_chunk, jobs(0)) if pool and starts else None
        for i, start in enumerate(starts):
            rows = min(cfg.shard_rows, spec.n - start)
            if pool:
                pending.get()
                if i + 1 < len(starts):  # the next shard is generated while this one is written
                    pending = pool.map_async(_fill_chunk, jobs(i + 1))
            else:
                for job in jobs(i):
                    _fill_chunk(job)
            writer.write({"note": _SHARD_BUFFERS[i % 2][:rows]})
            log.info("N=%d: wrote shard %d (%d rows)", spec.n, writer.done - 1, rows)
    finally:
        if pool:
            pool.terminate()
            pool.join()
        _SHARD_BUFFERS.clear()
    writer.close()
    centres_block.cache_clear()
    return folder, time.perf_counter() - t


def _shard_arrays(x) -> list[tuple[int, np.ndarray]]:
    return list(x.blocks()) if isinstance(x, ShardedArray) else [(0, x)]


def new_shortlist_index(cfg: OnDiskBenchConfig, x, nlist: int):
    """The empty shortlist index on the prefix (IVF trained on a sample) and its training seconds."""
    import faiss

    lo = cfg.shortlist_dim
    if cfg.index == "flat":
        return faiss.IndexFlatIP(lo), 0.0
    if cfg.index == "hnsw":
        index = faiss.IndexHNSWFlat(lo, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.ef_construction
        return index, 0.0
    rng = np.random.default_rng(cfg.seed)
    sample = np.sort(rng.choice(len(x), min(len(x), cfg.train_per_cell * nlist), replace=False))
    quantizer = faiss.IndexHNSWFlat(lo, 32, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexIVFFlat(quantizer, lo, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter, index.cp.seed, index.cp.min_points_per_centroid = 10, cfg.seed, 5
    index.cp.spherical = True  # inner product on unit vectors: keep the centroids on the sphere
    t = time.perf_counter()
    index.train(l2_normalize(x.take(sample, slice(0, lo)) if isinstance(x, ShardedArray) else x[sample][:, :lo]))
    quantizer.hnsw.efSearch = 128
    return index, time.perf_counter() - t


def fill_and_truth(x, queries: np.ndarray, index, lo: int):
    """One pass over the shards: fill ``index`` with the ``lo``-d prefixes (when given) and the exact
    full-dim top-k of ``queries`` (one GEMM per 65,536-row block, its top-k merged into the running
    top-k). Returns (truth, fill seconds, read + truth seconds)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    queries = np.ascontiguousarray(queries, np.float32)
    fill_s, t, t_log, done = 0.0, time.perf_counter(), time.perf_counter(), 0
    for start, part in _shard_arrays(x):
        for s in range(0, len(part), CHUNK):
            block = np.asarray(part[s:s + CHUNK], dtype=np.float32)
            if index is not None:
                t_add = time.perf_counter()
                index.add(l2_normalize(block[:, :lo]))
                fill_s += time.perf_counter() - t_add
            scores = queries @ block.T
            k = min(K, scores.shape[1])
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], axis=1)
            best_i = np.concatenate([best_i, top + (start + s)], axis=1)
            keep = np.argpartition(-best_s, min(K, best_s.shape[1]) - 1, axis=1)[:, :K]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
            done += len(block)
            if time.perf_counter() - t_log > 60:
                t_log = time.perf_counter()
                log.info("index fill + truth: %d of %d rows, %.0f s (fill %.0f s)", done, len(x), t_log - t, fill_s)
    truth = np.take_along_axis(best_i, np.argsort(-best_s, axis=1, kind="stable"), 1)
    return truth, fill_s, time.perf_counter() - t - fill_s


def build_and_truth(cfg: OnDiskBenchConfig, folder: Path, x, queries: np.ndarray, nlist: int):
    """(index, truth, timings): built in one pass over the shards, or read from the cache beside them."""
    import faiss

    tag = {"hnsw": f"hnsw-d{cfg.shortlist_dim}-M{cfg.hnsw_m}-efc{cfg.ef_construction}",
           "ivf": f"ivf{nlist}-d{cfg.shortlist_dim}-s{cfg.seed}", "flat": f"flat-d{cfg.shortlist_dim}"}[cfg.index]
    index_path, truth_path = folder / f"{tag}.faiss", folder / f"truth-q{len(queries)}-s{cfg.seed}.npy"
    timings_path = folder / f"{tag}.json"
    if index_path.is_file() and truth_path.is_file() and timings_path.is_file():
        timings = dict(json.loads(timings_path.read_text()), cached=True)
        return faiss.read_index(str(index_path)), np.load(truth_path), timings
    index, train_s = new_shortlist_index(cfg, x, nlist)
    truth, fill_s, truth_s = fill_and_truth(x, queries, index, cfg.shortlist_dim)
    timings = {"train_s": train_s, "fill_s": fill_s, "truth_s": truth_s}
    faiss.write_index(index, str(index_path) + ".tmp")
    os.replace(str(index_path) + ".tmp", index_path)
    np.save(truth_path, truth)
    timings_path.write_text(json.dumps(timings))
    return index, truth, timings


def drop_page_cache(folder: Path) -> None:
    """Ask the kernel to drop the cached pages of this folder's files (only these files)."""
    for path in folder.rglob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _take_sorted(x, rows: np.ndarray) -> np.ndarray:
    """Rows (ascending) of a memory map or ``ShardedArray``: one fancy-index read per shard touched."""
    if not isinstance(x, ShardedArray):
        return x[rows]
    out = np.empty((len(rows),) + x.shape[1:], x.dtype)
    cut = np.searchsorted(rows, x.offsets)
    for s in np.flatnonzero(np.diff(cut)):
        out[cut[s]:cut[s + 1]] = x.parts[s][rows[cut[s]:cut[s + 1]] - x.offsets[s]]
    return out


def rerank(x, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The top-k of ``rows`` by exact full-dim score, reading only those rows from ``x``."""
    rows = rows[rows >= 0]
    order = np.sort(rows)  # ascending rows: sequential page access within each shard
    scores = _take_sorted(x, order).astype(np.float32) @ query
    top = np.argpartition(-scores, min(K, len(scores)) - 1)[:K]
    return order[top[np.argsort(-scores[top], kind="stable")]]


def time_queries(search, n_queries: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(latencies ms, found rows, QPS, CPU QPS) running the queries one by one on this thread.

    CPU QPS divides by this thread's CPU time (``time.thread_time``): on a shared machine the wall
    clock also counts the time other processes held the core; a disk read does not count there."""
    lat, found = [], []
    t0, c0 = time.perf_counter(), time.thread_time()
    for i in range(n_queries):
        t = time.perf_counter()
        found.append(np.pad(search(i), (0, K))[:K])
        lat.append(time.perf_counter() - t)
    cpu = time.thread_time() - c0
    return np.array(lat) * 1e3, np.array(found), n_queries / (time.perf_counter() - t0), n_queries / max(cpu, 1e-9)


def _row(n, strategy, store, index, lat, found, qps, truth, cpu_qps=None, **extra) -> dict:
    return {"n": n, "strategy": strategy, "store": store, "index": index, "threads": 1,
            "recall@10": recall_at_k(found, truth), "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "qps": qps, "cpu_qps": cpu_qps, "loadavg": os.getloadavg()[0],
            **extra}


def knobs(cfg: OnDiskBenchConfig, index, nlist: int):
    """(label, apply) for every query-time setting of the shortlist index."""
    lo = cfg.shortlist_dim
    if cfg.index == "hnsw":
        for ef in cfg.ef_search:
            yield f"hnsw@{lo} M={cfg.hnsw_m} ef={ef}", lambda ef=ef: setattr(index.hnsw, "efSearch", ef)
    elif cfg.index == "flat":
        yield f"faiss flat@{lo} (exact scan)", lambda: None
    else:
        for nprobe in cfg.nprobe:
            yield f"ivf{nlist},flat@{lo} nprobe={nprobe}", lambda nprobe=nprobe: setattr(index, "nprobe", nprobe)


def run_size(n: int, cfg: OnDiskBenchConfig) -> list[dict]:
    spec = SyntheticSpec(n, full_dim=cfg.full_dim, seed=cfg.seed)
    lo = cfg.shortlist_dim
    with AnonPeak() as gen_peak, threads(1):
        folder, write_s = write_synthetic_shards(cfg, spec, workers=cpu_count())
    shards = open_shards(folder)
    disk = shards.disk_bytes("note")
    log.info("N=%d: shards %s (%.2f GB, written in %.0f s; 0 = reused)", n, folder, disk / 1e9, write_s)
    queries = synthetic_vectors(spec, cfg.full_dim, "query", cfg.n_queries)
    q_lo = truncate(queries, lo)
    nlist = cfg.nlist or int(4 * math.sqrt(n))
    with AnonPeak() as open_peak:
        x = shards.array("note")
    with AnonPeak() as build_peak, threads(cpu_count()):
        index, truth, timings = build_and_truth(cfg, folder, x, queries, nlist)
    log.info("N=%d: %s index on %d-d: %s", n, cfg.index, lo, timings)
    common = {"disk_gb": disk / 1e9, "write_s": write_s, **timings, "peak_anon_gb_write": gen_peak.peak / 1e9,
              "peak_anon_gb_build": build_peak.peak / 1e9, "anon_gb_after_open": open_peak.peak / 1e9}
    out = []
    for knob, apply in knobs(cfg, index, nlist):
        apply()
        for shortlist in cfg.shortlists:
            def search(i, shortlist=shortlist):
                return rerank(x, index.search(q_lo[i:i + 1], shortlist)[1][0], queries[i])

            label = f"{knob} K'={shortlist} rerank@{cfg.full_dim}"
            with threads(1):
                for phase in ("cold", "warm"):
                    if phase == "cold":
                        drop_page_cache(folder)
                    with AnonPeak() as peak:
                        lat, found, qps, cpu_qps = time_queries(search, cfg.n_queries)
                    out.append(_row(n, "adaptive", f"memmap {cfg.dtype}", label, lat, found, qps, truth, cpu_qps,
                                    cache=phase, peak_anon_gb_search=peak.peak / 1e9, **common))
                    log.info("N=%d %s %s: recall %.3f p50 %.2f ms QPS %.0f (CPU %.0f) anon %.2f GB load %.1f", n,
                             label, phase, out[-1]["recall@10"], out[-1]["p50_ms"], qps, cpu_qps, peak.peak / 1e9,
                             out[-1]["loadavg"])
    if cfg.in_ram_baseline and n * cfg.full_dim * 4 > cfg.ram_baseline_max_gb * 1e9:
        log.info("N=%d: no float32-in-RAM baseline (%.1f GB > %.1f GB)", n, n * cfg.full_dim * 4 / 1e9,
                 cfg.ram_baseline_max_gb)
    elif cfg.in_ram_baseline:
        out += in_ram_baseline(cfg, x, queries, truth, index, label, search)
    return out


def in_ram_baseline(cfg: OnDiskBenchConfig, x, queries, truth, index, label, search) -> list[dict]:
    """The same queries with the full-dim vectors as float32 in RAM (how the in-memory index holds
    them): the exact 64-d shortlist (``adaptive`` before this benchmark), and the last on-disk
    configuration with its re-rank read from RAM instead of the memory maps."""
    n, lo, shortlist = len(x), cfg.shortlist_dim, cfg.shortlists[-1]
    rows = []
    with AnonPeak() as peak:
        full = np.empty((n, cfg.full_dim), np.float32)
        for start, part in _shard_arrays(x):
            for s in range(0, len(part), CHUNK):
                full[start + s: start + s + CHUNK] = part[s:s + CHUNK]
        low = truncate(full[:, :lo], lo)
        q_lo = truncate(queries, lo)
        with threads(1):
            def exact_short(i):
                return rerank(full, np.argpartition(-(low @ q_lo[i]), shortlist - 1)[:shortlist], queries[i])

            def index_short(i):
                return rerank(full, index.search(q_lo[i:i + 1], shortlist)[1][0], queries[i])

            exact_label = f"numpy exact@{lo} K'={shortlist} rerank@{cfg.full_dim}"
            for name, fn in ((exact_label, exact_short), (label, index_short)):
                lat, found, qps, cpu_qps = time_queries(fn, cfg.n_queries)
                rows.append(_row(n, "adaptive", "RAM float32", name, lat, found, qps, truth, cpu_qps))
    for r in rows:
        r["peak_anon_gb_search"] = peak.peak / 1e9
        log.info("N=%d %s RAM: recall %.3f p50 %.2f ms QPS %.0f (CPU %.0f)", n, r["index"], r["recall@10"], r["p50_ms"],
                 r["qps"], r["cpu_qps"])
    return rows


def markdown(rows: list[dict]) -> str:
    cols = [("n", "N"), ("store", "vectors"), ("index", "search"), ("cache", "page cache"),
            ("recall@10", "R@10 vs exact 768"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("qps", "QPS (1 thread)"),
            ("cpu_qps", "QPS per CPU-second"), ("loadavg", "load"),
            ("peak_anon_gb_search", "peak RssAnon GB (search)"), ("peak_anon_gb_build", "peak RssAnon GB (build)"),
            ("disk_gb", "disk GB"), ("write_s", "write s"), ("train_s", "train s"), ("fill_s", "index fill s"),
            ("truth_s", "read + exact truth s")]

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
