"""Benchmark on real corpus embeddings through the ``Retriever`` (note -> neighbours queries).

Each query is a note id of the corpus (``Retriever.search(note_id, ...)``: self and exact
duplicates excluded), so latency is the full search call excluding encoding. Ground truth per
granularity is the exact search at full dim: ``note`` for exact/adaptive/ann/global+local and
``region`` (or ``image`` when the corpus has no regions) for local. Batch QPS is a sequential loop
over the queries (the Retriever answers one query per call).
"""

from __future__ import annotations

import time

import faiss
import numpy as np

from uninote.bench.machine import cpu_count, resident_mb, threads
from uninote.bench.measure import Record, latencies_ms, recall_at_k
from uninote.embeddings import NoteEmbeddings
from uninote.index import IndexConfig, Retriever, matryoshka_dims

REAL_STRATEGIES = ("exact", "adaptive", "ann", "local", "global+local")


def _ids(r: Retriever, qids: list[str], **kw) -> list[np.ndarray]:
    return [np.array([h.note_id for h in r.search(q, k=10, **kw)], dtype=object) for q in qids]


def _recall(found: list, truth: list) -> float:
    return recall_at_k(found, truth)


def _hnsw_bytes(r: Retriever, granularity: str, dim: int, search) -> float:
    stats = faiss.cvar.hnsw_stats
    stats.reset()
    n = search()
    return stats.ndis / max(n, 1) * dim * 4


def run_real(emb: NoteEmbeddings, bandwidth: float, dims: list[int] | None = None,
             strategies: tuple[str, ...] = REAL_STRATEGIES, n_queries: int = 200,
             thread_counts: list[int] | None = None, seed: int = 0, shortlist: int = 200,
             shortlist_dim: int = 64) -> list[Record]:
    """Records for every (dim, strategy) on real embeddings."""
    dims = dims or matryoshka_dims(emb.dim)
    thread_counts = thread_counts or sorted({1, cpu_count()})
    local_g = "region" if len(emb.region) else "image"
    flat = Retriever(emb, IndexConfig(kind="flat"), shortlist=shortlist, shortlist_dim=shortlist_dim,
                     local_granularity=local_g)
    hnsw = Retriever(emb, IndexConfig(kind="hnsw"), shortlist=shortlist, shortlist_dim=shortlist_dim,
                     local_granularity=local_g)
    rng = np.random.default_rng(seed)
    qids = [emb.note_ids[i] for i in rng.choice(len(emb), min(n_queries, len(emb)), replace=False)]
    def has_local_vectors(q: str) -> bool:
        qe = flat.query_embedding(q)
        return (qe.regions if local_g == "region" else qe.images) is not None

    has_local = [q for q in qids if has_local_vectors(q)]
    n_notes, n_local = len(emb), len(flat.table(local_g, emb.dim))
    avg_local = n_local / max(1, n_notes)
    truth_note = dict(zip(qids, _ids(flat, qids)))
    truth_local = dict(zip(has_local, _ids(flat, has_local, granularity=local_g, strategy="local")))
    records: list[Record] = []
    for dim in dims:
        plans = []  # (strategy, index label, granularity, query ids, search kwargs, retriever, bytes)
        if "exact" in strategies:
            plans.append(("exact", "numpy-matvec", "note", qids, {}, flat, n_notes * dim * 4))
        if "adaptive" in strategies and dim > shortlist_dim:
            plans.append(("adaptive", f"numpy {shortlist_dim}->{dim} K'={shortlist}", "note", qids,
                          {"strategy": "adaptive"}, flat, n_notes * shortlist_dim * 4 + shortlist * dim * 4))
        if "ann" in strategies:
            plans.append(("ann", f"hnsw M={hnsw.config.hnsw_m} ef={hnsw.config.ef_search}", "note", qids,
                          {"strategy": "ann"}, hnsw, None))
        if "local" in strategies:
            plans.append(("local", "numpy max-sim", local_g, has_local, {"strategy": "local"}, flat,
                          n_local * dim * 4))
        if "local" in strategies and "adaptive" in strategies and dim > shortlist_dim:
            plans.append(("adaptive", f"numpy max-sim {shortlist_dim}->{dim} K'={shortlist}", local_g, has_local,
                          {"strategy": "adaptive", "granularity": local_g}, flat,
                          n_local * shortlist_dim * 4 + shortlist * avg_local * dim * 4))
        if "global+local" in strategies:
            plans.append(("global+local", f"numpy K'={shortlist}", "note", has_local, {"strategy": "global+local"},
                          flat, n_notes * dim * 4 + shortlist * avg_local * dim * 4))
        for strategy, label, gran, ids, kw, r, scanned in plans:
            kw = dict(kw, dim=dim)
            if strategy == "ann":
                r.ann_index("note", dim)  # build outside the timed loop
                scanned = _hnsw_bytes(r, "note", dim, lambda: len(_ids(r, ids, **kw)))
            found = _ids(r, ids, **kw)
            ref = [(truth_local if gran == local_g else truth_note)[q] for q in ids]
            floor = scanned / bandwidth * 1e3
            for t in thread_counts:
                with threads(t):
                    lat, _ = latencies_ms(lambda i: r.search(ids[i], k=10, **kw), len(ids))
                    start = time.perf_counter()
                    for q in ids:
                        r.search(q, k=10, **kw)
                    qps = len(ids) / (time.perf_counter() - start)
                p50 = float(np.percentile(lat, 50))
                records.append(Record(
                    n=n_notes, dim=dim, granularity=gran, strategy=strategy, index=label,
                    recall_at_10=_recall(found, ref), p50_ms=p50, p95_ms=float(np.percentile(lat, 95)),
                    qps=qps, bytes_per_vector=float(dim * 4), bytes_scanned_per_query=float(scanned),
                    floor_ms=floor, threads=t, floor_multiple=p50 / floor if floor else None,
                    rss_mb=resident_mb(), source=f"real:{emb.model_version}"))
    return records
