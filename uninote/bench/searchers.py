"""Searchers over a plain vector matrix, one per (strategy, index), as the benchmark times them.

Each searcher holds its query matrices and exposes ``one(i) -> top-k rows`` (a single query, the
latency path), ``batch() -> (nq, k) rows`` (throughput), and the bytes it reads per query, so the
benchmark can compare every measured latency with the memory-bandwidth floor of those bytes.
These are the same kernels ``uninote.index`` uses (numpy matvec + argpartition for exact and the
adaptive re-rank, faiss for HNSW / IVF-PQ), without the note bookkeeping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from uninote.index.ann import _pq_m, build_ann, ivf_nlist, ivf_train_size
from uninote.index.vectors import top_indices

K = 10


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    return top_indices(scores, k)


def _topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, idx, 1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1)


@dataclass
class Searcher:
    strategy: str
    index: str
    dim: int
    build_s: float = 0.0
    bytes_per_vector: float = 0.0
    params: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The index column of the report (kind and search-time parameters)."""
        return self.index

    def bytes_scanned(self) -> float:  # per query, measured or computed
        raise NotImplementedError


class NumpyExact(Searcher):
    """Brute force: one matvec over the contiguous (N, d) matrix, then argpartition."""

    def __init__(self, x: np.ndarray, queries: np.ndarray):
        super().__init__("exact", "numpy-matvec", x.shape[1], bytes_per_vector=4 * x.shape[1])
        self.x, self.q = x, queries

    def one(self, i: int) -> np.ndarray:
        return _topk(self.x @ self.q[i], K)

    def batch(self) -> np.ndarray:
        step = max(1, (256 << 20) // (4 * len(self.x)))  # keep the score block under 256 MB
        return np.concatenate([_topk_rows(self.q[s:s + step] @ self.x.T, K) for s in range(0, len(self.q), step)])

    def bytes_scanned(self) -> float:
        return float(self.x.nbytes)


class FaissFlat(Searcher):
    """Brute force with faiss ``IndexFlatIP`` (SIMD inner products + heap, one pass)."""

    def __init__(self, x: np.ndarray, queries: np.ndarray):
        super().__init__("exact", "faiss-flat", x.shape[1], bytes_per_vector=4 * x.shape[1])
        t = time.perf_counter()
        self.faiss_index = faiss.IndexFlatIP(x.shape[1])
        self.faiss_index.add(x)
        self.build_s = time.perf_counter() - t
        self.q, self.n = np.ascontiguousarray(queries), len(x)

    def one(self, i: int) -> np.ndarray:
        return self.faiss_index.search(self.q[i:i + 1], K)[1][0]

    def batch(self) -> np.ndarray:
        return self.faiss_index.search(self.q, K)[1]

    def bytes_scanned(self) -> float:
        return float(self.n * self.dim * 4)


class Adaptive(Searcher):
    """Matryoshka adaptive retrieval: exact shortlist at ``low`` dims, exact re-rank at ``dim``."""

    def __init__(self, x_low: np.ndarray, q_low: np.ndarray, x_high: np.ndarray, q_high: np.ndarray,
                 shortlist: int = 200):
        lo, hi = x_low.shape[1], x_high.shape[1]
        super().__init__("adaptive", f"numpy {lo}->{hi} K'={shortlist}", hi, bytes_per_vector=4 * (lo + hi),
                         params={"shortlist": shortlist, "shortlist_dim": lo})
        self.xl, self.ql, self.xh, self.qh, self.shortlist = x_low, q_low, x_high, q_high, shortlist

    def one(self, i: int) -> np.ndarray:
        short = top_indices(self.xl @ self.ql[i], self.shortlist)
        return short[_topk(self.xh[short] @ self.qh[i], K)]

    def batch(self) -> np.ndarray:
        step = max(1, (256 << 20) // (4 * len(self.xl)))
        shorts = np.concatenate([np.argpartition(-(self.ql[s:s + step] @ self.xl.T), self.shortlist - 1, axis=1)
                                 [:, : self.shortlist] for s in range(0, len(self.ql), step)])
        scores = np.einsum("qsd,qd->qs", self.xh[shorts], self.qh)
        return np.take_along_axis(shorts, _topk_rows(scores, K), 1)

    def bytes_scanned(self) -> float:
        return float(self.xl.nbytes + self.shortlist * self.dim * 4)


class HNSW(Searcher):
    """faiss ``IndexHNSWFlat`` (inner product), optionally cached on disk across runs."""

    def __init__(self, x: np.ndarray, queries: np.ndarray, m: int = 32, ef_construction: int = 40,
                 cache: Path | None = None):
        super().__init__("ann", f"hnsw M={m}", x.shape[1], params={"M": m, "efConstruction": ef_construction})
        self.q, self.n = np.ascontiguousarray(queries), len(x)
        t = time.perf_counter()
        if cache is not None and cache.is_file():
            self.faiss_index = faiss.read_index(str(cache))
            self.params["cached"] = True
        else:
            self.faiss_index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            self.faiss_index.hnsw.efConstruction = ef_construction
            self.faiss_index.add(x)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                faiss.write_index(self.faiss_index, str(cache) + ".tmp")
                Path(str(cache) + ".tmp").rename(cache)
        self.build_s = time.perf_counter() - t
        self.bytes_per_vector = 4 * self.dim + 2 * m * 4 * 1.07  # vectors + level-0 links (+ upper levels)
        self._ndis = 0.0

    def set_ef(self, ef: int) -> "HNSW":
        self.faiss_index.hnsw.efSearch = ef
        self.params["efSearch"] = ef
        return self

    @property
    def label(self) -> str:
        return f"hnsw M={self.params['M']} ef={self.params.get('efSearch')}"

    def one(self, i: int) -> np.ndarray:
        return self.faiss_index.search(self.q[i:i + 1], K)[1][0]

    def batch(self) -> np.ndarray:
        return self.faiss_index.search(self.q, K)[1]

    def bytes_scanned(self) -> float:
        stats = faiss.cvar.hnsw_stats
        stats.reset()
        self.faiss_index.search(self.q, K)
        return float(stats.ndis / len(self.q) * self.dim * 4)


class IVFPQ(Searcher):
    """``uninote.index.ann.build_ann`` IVF-PQ (so the product's build), shortlist of ``k * rerank``
    re-ranked with exact vectors ``x_rerank`` (the index dim for same-dim recall, or a higher one
    as the retriever does with its full-dim vectors)."""

    def __init__(self, x: np.ndarray, queries: np.ndarray, x_rerank: np.ndarray, q_rerank: np.ndarray,
                 config, name: str = ""):
        d, n = x.shape[1], len(x)
        nlist = ivf_nlist(n, config)
        params = {"nlist": nlist, "pq_m": _pq_m(d, config), "train": ivf_train_size(n, nlist, config),
                  "nprobe": config.ivf_nprobe, "rerank": config.rerank_factor, "config": name}
        super().__init__("ann", f"ivfpq nlist={nlist} m={params['pq_m']}", d, params=params)
        t = time.perf_counter()
        self.faiss_index = build_ann(x, "ivfpq", config)
        self.build_s = time.perf_counter() - t
        self.bytes_per_vector = self.faiss_index.code_size + 8  # codes + ids (exact re-rank vectors counted separately)
        self.q, self.n = np.ascontiguousarray(queries), n
        self.set_rerank(x_rerank, q_rerank)

    def set_nprobe(self, nprobe: int) -> "IVFPQ":
        self.faiss_index.nprobe = min(nprobe, self.faiss_index.nlist)
        self.params["nprobe"] = self.faiss_index.nprobe
        return self

    def set_rerank(self, x_rerank: np.ndarray, q_rerank: np.ndarray, factor: int | None = None) -> "IVFPQ":
        """Re-rank the shortlist of ``K * factor`` with these exact vectors."""
        self.xr, self.qr = x_rerank, q_rerank
        self.rerank = self.params["rerank"] = factor or self.params["rerank"]
        return self

    @property
    def label(self) -> str:
        p = self.params
        tag = f" ({p['config']})" if p["config"] else ""
        return (f"ivfpq nlist={p['nlist']} m={p['pq_m']} train={p['train'] // 1000}k nprobe={p['nprobe']} "
                f"R={self.rerank} rerank@{self.xr.shape[1]}{tag}")

    def one(self, i: int) -> np.ndarray:
        rows = self.faiss_index.search(self.q[i:i + 1], K * self.rerank)[1][0]
        rows = rows[rows >= 0]
        return rows[_topk(self.xr[rows] @ self.qr[i], min(K, len(rows)))]

    def batch(self) -> np.ndarray:
        rows = self.faiss_index.search(self.q, K * self.rerank)[1]
        rows = np.where(rows < 0, 0, rows)
        scores = np.einsum("qsd,qd->qs", self.xr[rows], self.qr)
        return np.take_along_axis(rows, _topk_rows(scores, K), 1)

    def bytes_scanned(self) -> float:
        frac = min(1.0, self.faiss_index.nprobe / self.faiss_index.nlist)
        return float(frac * self.n * self.faiss_index.code_size + K * self.rerank * self.xr.shape[1] * 4)
