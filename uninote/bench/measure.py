"""Time one searcher: recall@10, single-query latency per thread count, batch QPS, bytes, floor."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from uninote.bench.machine import resident_mb, threads

RECORD_KEYS = ("n", "dim", "granularity", "strategy", "index", "recall@10", "p50_ms", "p95_ms", "qps",
               "bytes_per_vector", "bytes_scanned_per_query", "floor_ms", "threads")


@dataclass
class Record:
    """One measured configuration (the JSON schema of ``uninote bench --out``, plus extras)."""

    n: int
    dim: int
    granularity: str
    strategy: str
    index: str
    recall_at_10: float  # against exact search at the full dim
    p50_ms: float
    p95_ms: float
    qps: float  # batch throughput at ``threads``
    bytes_per_vector: float
    bytes_scanned_per_query: float
    floor_ms: float  # bytes_scanned_per_query / measured single-thread bandwidth
    threads: int
    recall_same_dim: float | None = None  # against exact search at this dim
    floor_multiple: float | None = None  # p50_ms / floor_ms
    build_s: float = 0.0
    rss_mb: float = 0.0
    source: str = "synthetic"
    params: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["recall@10"] = d.pop("recall_at_10")
        return d


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found_i ∩ truth_i| / |truth_i|."""
    pairs = [(set(np.asarray(f).tolist()), set(np.asarray(t).tolist())) for f, t in zip(found, truth)]
    return float(np.mean([len(f & t) / max(1, len(t)) for f, t in pairs])) if pairs else float("nan")


def latencies_ms(one, n_queries: int, warmup: int = 3) -> tuple[np.ndarray, list[np.ndarray]]:
    for i in range(min(warmup, n_queries)):
        one(i)
    times, results = [], []
    for i in range(n_queries):
        t = time.perf_counter()
        results.append(one(i))
        times.append(time.perf_counter() - t)
    return np.array(times) * 1e3, results


def measure(searcher, n: int, granularity: str, truth_full: np.ndarray, truth_dim: np.ndarray | None,
            bandwidth: float, thread_counts: list[int], source: str = "synthetic") -> list[Record]:
    """One record per thread count for ``searcher`` (see ``searchers.Searcher``)."""
    records = []
    n_queries = len(truth_full)
    scanned = searcher.bytes_scanned()
    floor = scanned / bandwidth * 1e3
    for t in thread_counts:
        with threads(t):
            lat, found = latencies_ms(searcher.one, n_queries)
            start = time.perf_counter()
            searcher.batch()
            qps = n_queries / (time.perf_counter() - start)
        found = np.array([np.pad(f, (0, 10 - len(f)), constant_values=-1) for f in found])
        p50 = float(np.percentile(lat, 50))
        records.append(Record(
            n=n, dim=searcher.dim, granularity=granularity, strategy=searcher.strategy, index=searcher.label,
            recall_at_10=recall_at_k(found, truth_full), p50_ms=p50, p95_ms=float(np.percentile(lat, 95)),
            qps=qps, bytes_per_vector=float(searcher.bytes_per_vector), bytes_scanned_per_query=scanned,
            floor_ms=floor, threads=t,
            recall_same_dim=None if truth_dim is None else recall_at_k(found, truth_dim),
            floor_multiple=p50 / floor if floor > 0 else None, build_s=searcher.build_s, rss_mb=resident_mb(),
            source=source, params=dict(searcher.params)))
    return records


def apply_floor(records: list[Record], bandwidth: float) -> None:
    """Recompute every floor (and latency / floor) for a final bandwidth estimate (bytes/s)."""
    for r in records:
        r.floor_ms = r.bytes_scanned_per_query / bandwidth * 1e3
        r.floor_multiple = r.p50_ms / r.floor_ms if r.floor_ms > 0 else None
