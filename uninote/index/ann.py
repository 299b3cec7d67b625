"""Approximate (faiss) indexes: which kind for which size, how to build and query them.

Kinds (inner product on L2-normalised vectors, so scores are cosines):
- ``flat``  exact; no faiss structure is needed because the ``VectorTable`` scan *is* the exact
  index (numpy matvec + argpartition, measured at or under the memory-bandwidth floor; see
  docs/results/index.md). ``ann`` on a flat index is exact search.
- ``hnsw``  ``IndexHNSWFlat`` (M links, efConstruction/efSearch); stores the raw vectors, so its
  scores are exact at the index dim; supports ``add`` but not removal (tombstones filter dead
  notes at query time, see ``Retriever``).
- ``ivfpq`` ``IndexIVFPQ``; PQ scores are lossy, so its shortlist (``k * rerank_factor``) is always
  re-ranked with the exact full-dim vectors. Its recall is set by the coarse quantizer (how many
  true neighbours fall in the ``nprobe`` visited cells), not by the code size: see the defaults.

Query-time knobs (``ef_search``, ``ivf_nprobe``, ``rerank_factor``, ``local_candidates``) are read
at every search, so ``retriever.config = retriever.config.tuned(ivf_nprobe=64)`` changes them
without a rebuild (also on a loaded index).

``kind="auto"`` picks by vector count: flat up to ``flat_max``, hnsw up to ``hnsw_max``, else ivfpq.

``kind="milvus"`` (with ``uri``) serves every granularity from Milvus collections
(``uninote.index.milvus``: their kind is ``milvus_kind``, chosen like ``auto`` by default, by row
count); a search Milvus does not answer (``exact`` on a non-FLAT collection, a multi-vector
granularity with no vectors) uses the local tables, with faiss indexes of the ``auto`` kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import faiss
import numpy as np

from uninote.embeddings import truncate
from uninote.errors import ConfigError

KINDS = ("auto", "flat", "hnsw", "ivfpq", "milvus")
FAISS_KINDS = KINDS[:4]


@dataclass
class IndexConfig:
    """How indexes are built and searched. Every field has a default that suits ~6k to ~1M notes."""

    kind: str = "auto"  # auto | flat | hnsw | ivfpq | milvus: index kind; auto picks by vector count
    flat_max: int = 50_000  # auto: exact flat index up to this many vectors
    hnsw_max: int = 5_000_000  # auto: HNSW up to this many vectors, IVF-PQ beyond
    hnsw_m: int = 32  # HNSW links per node (memory ~ M*8 bytes/vector on top of the vectors)
    ef_construction: int = 40  # HNSW build beam width (build time grows ~linearly)
    ef_search: int = 64  # HNSW query beam width (raised to k when k is larger)
    # IVF-PQ defaults: fine, well-trained cells and a long exact re-rank shortlist, measured at N=1M,
    # d=128 on the synthetic clustered set (docs/results/index.md).
    ivf_nlist: int = 0  # IVF cells; 0 = 8*sqrt(n) clamped to [1, n/39]
    ivf_train_size: int = 0  # k-means training sample; 0 = 20 points per cell, at least 20k (capped at n)
    ivf_nprobe: int = 32  # IVF cells visited per query (query-time)
    pq_m: int = 0  # PQ sub-quantizers; 0 = dim/8 (one byte per 8 dims), must divide dim
    rerank_factor: int = 10  # IVF-PQ shortlist = k * rerank_factor, re-ranked exactly at full dim (query-time)
    local_candidates: int = 32  # multi-vector ANN: vectors fetched per query vector before rescoring
    seed: int = 0  # training seed for IVF-PQ k-means
    # kind="milvus": the indexes live in Milvus collections (uninote/index/milvus.py)
    uri: str = ""  # Milvus URI: http://host:19530, or a Milvus Lite file path ending in .db
    collection: str = ""  # collection name prefix; "" = derived from the model version
    milvus_kind: str = "auto"  # auto | flat | hnsw | ivfpq: the Milvus index of each collection
    milvus_timeout: float = 5.0  # seconds to reach Milvus before failing with the URI named

    def validate(self) -> "IndexConfig":
        if self.kind not in KINDS:
            raise ConfigError(f"index kind {self.kind!r} unknown; expected one of {KINDS}")
        for name in ("flat_max", "hnsw_max", "hnsw_m", "ef_construction", "ef_search", "ivf_nprobe",
                     "rerank_factor", "local_candidates"):
            if getattr(self, name) < 1:
                raise ConfigError(f"index config {name} must be >= 1, got {getattr(self, name)}")
        if self.ivf_nlist < 0 or self.pq_m < 0 or self.ivf_train_size < 0:
            raise ConfigError("ivf_nlist, ivf_train_size and pq_m must be >= 0 (0 = automatic)")
        if self.milvus_kind not in FAISS_KINDS:
            raise ConfigError(f"milvus_kind {self.milvus_kind!r} unknown; expected one of {FAISS_KINDS}")
        if self.kind == "milvus" and not self.uri:
            raise ConfigError("index kind 'milvus' needs uri (http://host:19530, or a Milvus Lite file *.db)")
        if self.milvus_timeout <= 0:
            raise ConfigError(f"milvus_timeout must be > 0 seconds, got {self.milvus_timeout}")
        return self

    def tuned(self, **changes) -> "IndexConfig":
        """A copy with query-time knobs changed (valid on built or loaded indexes, no rebuild)."""
        build_time = sorted(set(changes) - set(QUERY_FIELDS))
        if build_time:
            raise ConfigError(f"{build_time} are build-time index settings; only {QUERY_FIELDS} "
                              "can change on a built index (rebuild with a new IndexConfig instead)")
        return replace(self, **changes).validate()


QUERY_FIELDS = ("ef_search", "ivf_nprobe", "rerank_factor", "local_candidates")


def choose_kind(n_vectors: int, config: IndexConfig) -> str:
    """The faiss index kind for a table of ``n_vectors`` (``config.kind`` unless it is ``auto``;
    ``milvus`` picks like ``auto`` for the tables kept in-process)."""
    if config.kind not in ("auto", "milvus"):
        return config.kind
    if n_vectors <= config.flat_max:
        return "flat"
    return "hnsw" if n_vectors <= config.hnsw_max else "ivfpq"


def milvus_kind(n_vectors: int, config: IndexConfig) -> str:
    """The Milvus index kind of a collection of ``n_vectors`` (``config.milvus_kind``, ``auto`` by count)."""
    return choose_kind(n_vectors, replace(config, kind=config.milvus_kind))


def _pq_m(dim: int, config: IndexConfig) -> int:
    m = config.pq_m or max(1, dim // 8)
    while dim % m:
        m -= 1
    return m


def ivf_nlist(n: int, config: IndexConfig) -> int:
    """IVF cells for ``n`` vectors: ``config.ivf_nlist`` or 8*sqrt(n), clamped to [1, n/39]."""
    return max(1, min(config.ivf_nlist or int(8 * math.sqrt(n)), n // 39))


def ivf_train_size(n: int, nlist: int, config: IndexConfig) -> int:
    """k-means training sample size: ``config.ivf_train_size`` or 20 per cell (>= 20k), <= n."""
    return min(n, config.ivf_train_size or max(20_000, 20 * nlist))


def _new_index(n: int, dim: int, kind: str, config: IndexConfig):
    """An empty faiss index of ``kind`` for ``n`` vectors of ``dim`` (IVF-PQ still untrained)."""
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        return index
    if kind == "ivfpq":
        if n < 64:
            raise ValueError(f"IVF-PQ needs at least 64 vectors to train, got {n}; use kind='flat'")
        nlist = ivf_nlist(n, config)
        nbits = max(4, min(8, int(math.log2(max(n // 39, 16)))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, _pq_m(dim, config), nbits,
                                 faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        index.cp.min_points_per_centroid = 20  # the auto sample is 20 per cell (faiss warns below 39)
        index.pq.cp.seed = config.seed
        index.pq.cp.niter = 10  # PQ k-means: 10 iterations are enough, the coarse k-means dominates
        return index
    raise ValueError(f"unknown index kind {kind!r}")


def _rows(source, rows, dim: int | None) -> np.ndarray:
    """float32 rows of ``source`` (an array, memmap or ``ShardedArray``), as the index sees them:
    the re-normalised ``dim`` prefix when ``dim`` is given."""
    block = np.asarray(source[rows], dtype=np.float32)
    return np.ascontiguousarray(block if dim is None or dim == block.shape[1] else truncate(block, dim))


def build_ann(vectors: np.ndarray, kind: str, config: IndexConfig):
    """A faiss index over ``vectors`` (ids = row numbers), or None for ``flat``."""
    if kind == "flat":
        return None
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "hnsw":  # one add: faiss inserts the upper levels first, in parallel
        index = _new_index(*vectors.shape, kind, config)
        index.add(vectors)
        return index
    return build_ann_streaming(vectors, kind, config)


def build_ann_streaming(source, kind: str, config: IndexConfig, dim: int | None = None,
                        block_rows: int = 65_536):
    """A faiss index filled block by block from ``source`` (rows, D): an array, a memory map or a
    ``uninote.shards.ShardedArray``, so only one block is in RAM besides the index. ``dim``
    indexes the re-normalised Matryoshka prefix instead of the full rows.

    IVF-PQ is trained on the same random sample ``build_ann`` draws, then filled in blocks: the
    same index as the in-memory build. HNSW is filled in blocks (the graph differs from a single
    add only in insertion order). ``flat`` returns None.
    """
    if kind == "flat":
        return None
    n, width = len(source), (dim or source.shape[1])
    index = _new_index(n, width, kind, config)
    if kind == "ivfpq":
        rng = np.random.default_rng(config.seed)
        n_train = ivf_train_size(n, index.nlist, config)
        sample = np.arange(n) if n <= n_train else rng.choice(n, n_train, replace=False)
        index.train(_rows(source, sample, dim))
        index.nprobe = min(config.ivf_nprobe, index.nlist)
    for start in range(0, n, block_rows):
        index.add(_rows(source, slice(start, min(start + block_rows, n)), dim))
    return index


def ann_search(index, queries: np.ndarray, k: int, config: IndexConfig) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of shape (q, k) from a faiss index; missing results have row -1."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = max(1, min(k, index.ntotal))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(config.ef_search, k)
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = min(config.ivf_nprobe, index.nlist)
    return index.search(queries, k)


def index_kind(index) -> str:
    """The kind name of a faiss index built by ``build_ann`` (``flat`` for None)."""
    if index is None:
        return "flat"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    raise ValueError(f"unsupported faiss index type {type(index).__name__}")
