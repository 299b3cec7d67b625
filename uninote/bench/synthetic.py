"""Benchmark on synthetic Matryoshka-like vectors at N = 10k ... 1M (see uninote.index.synthetic).

Per corpus size: one table at the largest dim needed (held in memory, capped by ``max_bytes``),
truncated + re-normalised copies at the lower dims, fresh query vectors, and the ground truth
= exact top-10 at the *full* synthetic dim (768), computed by streaming the full-dim corpus in
chunks so it never has to be held (1M x 768 would be 3 GB).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uninote.bench import searchers as S
from uninote.bench.machine import cpu_count, threads
from uninote.bench.measure import Record, measure
from uninote.embeddings import truncate
from uninote.errors import ConfigError
from uninote.index.ann import IndexConfig
from uninote.index.synthetic import SyntheticSpec, iter_chunks, synthetic_vectors

log = logging.getLogger(__name__)


@dataclass
class SyntheticBenchConfig:
    """What the synthetic benchmark measures (defaults fit a few minutes on 2 cores up to 100k)."""

    sizes: list[int] = field(default_factory=lambda: [10_000, 100_000])  # corpus sizes N
    dims: list[int] = field(default_factory=lambda: [64, 128, 256, 768])  # dims for exact/adaptive
    strategies: list[str] = field(default_factory=lambda: ["exact", "adaptive", "ann"])  # what to run
    ann_dims: list[int] = field(default_factory=lambda: [128])  # dims at which ANN indexes are built
    n_queries: int = 100  # queries per configuration
    thread_counts: list[int] = field(default_factory=lambda: sorted({1, cpu_count()}))  # latency/QPS threads
    ef_search: list[int] = field(default_factory=lambda: [16, 32, 64, 128])  # HNSW efSearch sweep
    hnsw_m: int = 32  # HNSW links
    ef_construction: int = 40  # HNSW build beam
    ivf_nprobe: list[int] = field(default_factory=lambda: [16, 32, 64])  # IVF-PQ nprobe sweep ([] skips IVF-PQ)
    ivf_rerank: list[int] = field(default_factory=lambda: [10, 20])  # IVF-PQ re-rank factor sweep (shortlist k*R)
    ivf_baseline: bool = True  # also build + measure the pre-tuning IndexConfig IVF-PQ defaults
    shortlist: int = 200  # adaptive K'
    shortlist_dim: int = 64  # adaptive first-pass dim
    full_dim: int = 768  # synthetic full dim (ground truth dim)
    max_bytes: int = 4 << 30  # cap on the largest held table; dims above it are skipped at that N
    cache_dir: Path | None = None  # HNSW indexes cached here (reruns at 1M skip the build)
    seed: int = 0

    def validate(self) -> "SyntheticBenchConfig":
        bad = [d for d in self.dims + self.ann_dims if not 1 <= d <= self.full_dim]
        if bad:
            raise ConfigError(f"dims {bad} outside 1..{self.full_dim}")
        unknown = set(self.strategies) - {"exact", "adaptive", "ann"}
        if unknown:
            raise ConfigError(f"synthetic bench strategies are exact, adaptive, ann; got {sorted(unknown)}")
        if self.n_queries < 1 or any(n < 100 for n in self.sizes):
            raise ConfigError("need n_queries >= 1 and every size >= 100")
        return self


def full_dim_truth(spec: SyntheticSpec, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k rows at the full dim, streaming the corpus in chunks."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start, block in iter_chunks(spec, spec.full_dim):
        s = np.concatenate([best_s, queries @ block.T], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(block)), (len(queries), len(block)))], axis=1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


def _hnsw_cache(cfg: SyntheticBenchConfig, spec: SyntheticSpec, dim: int) -> Path | None:
    if cfg.cache_dir is None:
        return None
    return Path(cfg.cache_dir) / (f"hnsw-n{spec.n}-d{dim}-M{cfg.hnsw_m}-efc{cfg.ef_construction}-"
                                  f"s{spec.seed}-noise{spec.noise}-tau{spec.decay_tau}.faiss")


def old_ivf_config(n: int, seed: int = 0) -> IndexConfig:
    """The IVF-PQ defaults before tuning: 4*sqrt(n) cells trained on 20k points, nprobe 16, R=4."""
    return IndexConfig(kind="ivfpq", ivf_nlist=int(4 * np.sqrt(n)), ivf_train_size=20_000, ivf_nprobe=16,
                       rerank_factor=4, seed=seed)


def run_ivfpq(cfg: SyntheticBenchConfig, n: int, d: int, hold: int, tables, qs, run) -> None:
    """IVF-PQ at dim ``d``: current defaults swept over nprobe x re-rank factor (and the old defaults),
    each re-ranked at ``d`` (same-dim recall) and at the held dim ``hold`` (as the retriever does)."""
    builds = [("defaults", IndexConfig(kind="ivfpq", seed=cfg.seed), cfg.ivf_nprobe, cfg.ivf_rerank)]
    if cfg.ivf_baseline:
        old = old_ivf_config(n, cfg.seed)
        builds.insert(0, ("old defaults", old, [old.ivf_nprobe], [old.rerank_factor]))
    for name, index_cfg, nprobes, reranks in builds:
        with threads(cpu_count()):
            ivf = S.IVFPQ(tables[d], qs[d], tables[d], qs[d], index_cfg, name)
        log.info("N=%d d=%d: IVF-PQ (%s) built in %.1fs", n, d, name, ivf.build_s)
        for rdim in sorted({d, hold}):
            for nprobe in nprobes:
                for factor in reranks:
                    run(ivf.set_nprobe(nprobe).set_rerank(tables[rdim], qs[rdim], factor), d)
        del ivf


def run_size(n: int, cfg: SyntheticBenchConfig, bandwidth: float) -> list[Record]:
    """Every configured measurement at one corpus size."""
    spec = SyntheticSpec(n, full_dim=cfg.full_dim, seed=cfg.seed)
    need = sorted(set(cfg.dims) | ({cfg.shortlist_dim} if "adaptive" in cfg.strategies else set())
                  | (set(cfg.ann_dims) if "ann" in cfg.strategies else set()))
    fits = [d for d in need if n * d * 4 <= cfg.max_bytes]
    if len(fits) < len(need):
        log.warning("N=%d: skipping dims %s (table over %d bytes)", n, sorted(set(need) - set(fits)), cfg.max_bytes)
    hold = max(fits)
    t = time.perf_counter()
    with threads(cpu_count()):
        x_hold = synthetic_vectors(spec, hold)
        queries = synthetic_vectors(spec, cfg.full_dim, "query", cfg.n_queries)
        truth_full = full_dim_truth(spec, queries)
    log.info("N=%d: generated %dx%d + full-dim truth in %.1fs", n, n, hold, time.perf_counter() - t)
    tables = {d: (x_hold if d == hold else truncate(x_hold, d)) for d in fits}
    qs = {d: truncate(queries, d) for d in fits}
    truth_dim: dict[int, np.ndarray] = {}
    records: list[Record] = []

    def run(searcher, dim):
        if dim not in truth_dim:
            with threads(cpu_count()):
                truth_dim[dim] = S.NumpyExact(tables[dim], qs[dim]).batch()
        out = measure(searcher, n, "note", truth_full, truth_dim[dim], bandwidth, cfg.thread_counts)
        for r in out:
            log.info("N=%d d=%d %s %s t=%d recall=%.3f p50=%.3fms qps=%.0f", n, dim, r.strategy, r.index,
                     r.threads, r.recall_at_10, r.p50_ms, r.qps)
        records.extend(out)

    for d in [d for d in cfg.dims if d in tables]:
        if "exact" in cfg.strategies:
            run(S.NumpyExact(tables[d], qs[d]), d)
            run(S.FaissFlat(tables[d], qs[d]), d)
        if "adaptive" in cfg.strategies and d > cfg.shortlist_dim:
            lo = cfg.shortlist_dim
            run(S.Adaptive(tables[lo], qs[lo], tables[d], qs[d], cfg.shortlist), d)
    if "ann" in cfg.strategies:
        for d in [d for d in cfg.ann_dims if d in tables]:
            if cfg.ef_search:  # [] skips HNSW (its 1M build takes minutes)
                with threads(cpu_count()):
                    hnsw = S.HNSW(tables[d], qs[d], cfg.hnsw_m, cfg.ef_construction, _hnsw_cache(cfg, spec, d))
                log.info("N=%d d=%d: HNSW ready in %.1fs", n, d, hnsw.build_s)
                for ef in cfg.ef_search:
                    run(hnsw.set_ef(ef), d)
                del hnsw
            if cfg.ivf_nprobe:
                run_ivfpq(cfg, n, d, hold, tables, qs, run)
    return records


def run_synthetic(cfg: SyntheticBenchConfig, bandwidth: float) -> list[Record]:
    cfg.validate()
    records = []
    for n in cfg.sizes:
        records.extend(run_size(n, cfg, bandwidth))
    return records
