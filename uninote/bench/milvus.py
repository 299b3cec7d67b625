"""Milvus against in-process FAISS on real embeddings: build time, single-query latency per
strategy, and how far the neighbour lists agree (``uninote bench --embeddings E --milvus URI``).

Both sides are a ``Retriever`` over the same embeddings (memory-mapped shards); the Milvus one has
``IndexConfig(kind="milvus", uri=..., milvus_kind=kind)``, the FAISS one ``IndexConfig(kind=kind)``,
so the same strategies run and only where the note index lives differs. Queries are note ids
(note -> neighbours, self excluded; ``granularities`` picks the indexes searched, ``image`` and
``region`` sampling notes that have vectors there), sampled with a seed, timed one at a time, the two sides
alternating query by query so load changes on a shared machine hit both alike. ``overlap@k`` is
the mean share of the FAISS list that the Milvus list holds; ``same scores`` the share of queries
whose two score lists agree within 1e-5 (the lists differ then only in the order of tied notes);
``max |score diff|`` compares the scores of the notes both return.
"""

from __future__ import annotations

import os
import time

import numpy as np

from uninote.index import IndexConfig, Retriever

STRATEGIES = ("exact", "adaptive", "ann")


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return ""


def _timed_search(r: Retriever, q: str, k: int, dim: int, strategy: str, granularity: str = "note"):
    t0 = time.perf_counter()
    hits = r.search(q, k=k, dim=dim, granularity=granularity, strategy=strategy)
    return (time.perf_counter() - t0) * 1000, hits


def bench_milvus(emb, uri: str, kinds=("auto",), strategies=STRATEGIES, dims=None, k: int = 10,
                 n_queries: int = 200, shortlist_dim: int = 64, seed: int = 0, log=print,
                 granularities=("note",)) -> list[dict]:
    """One record per (index kind, granularity, strategy, dim): latency p50/p95 of each side,
    overlap@k. ``image``/``region`` queries are the notes' own vectors (fused note vector against
    photos, every region against regions), so only notes with vectors there are sampled."""
    from uninote.index.milvus import MilvusIndex

    full = emb.dim
    dims = sorted(set(dims or [min(64, full), full]))
    rng = np.random.default_rng(seed)
    sampled = {}
    for g in granularities:
        owner = {"image": emb.image_owner, "region": emb.region_owner}.get(g)
        pool = np.arange(len(emb)) if owner is None else np.unique(np.asarray(owner))
        sampled[g] = [emb.note_ids[i] for i in rng.choice(pool, min(n_queries, len(pool)), replace=False)]
    rows = []
    for kind in kinds:
        faiss_r = Retriever(emb, IndexConfig(kind=kind), shortlist_dim=shortlist_dim)
        milvus_r = Retriever(emb, IndexConfig(kind="milvus", uri=uri, milvus_kind=kind), shortlist_dim=shortlist_dim)
        try:
            need = sorted(set(dims) | ({shortlist_dim} if "adaptive" in strategies else set()))
            for g in granularities:
                queries = sampled[g]
                t0 = time.perf_counter()
                faiss_r.build(dims=need, granularities=[g])
                faiss_build = time.perf_counter() - t0
                t0 = time.perf_counter()
                milvus_r.build(dims=need, granularities=[g])
                milvus_build = time.perf_counter() - t0
                m: MilvusIndex = milvus_r.milvus
                built = {d: m.open(g, d) for d in need}
                log(f"kind {kind} {g}: faiss build {faiss_build:.1f}s, milvus build {milvus_build:.1f}s ({built})")
                for strategy in strategies:
                    for dim in dims:
                        if strategy == "adaptive" and dim <= shortlist_dim:
                            continue  # adaptive at or below the shortlist dim is exact
                        for r in (faiss_r, milvus_r):  # warm: first-use tables, loaded collections
                            r.search(queries[0], k=k, dim=dim, granularity=g, strategy=strategy)
                        lat = {"faiss": [], "milvus": []}
                        overlap, same, diff = [], [], 0.0
                        for q in queries:
                            tf, a = _timed_search(faiss_r, q, k, dim, strategy, g)
                            tm, b = _timed_search(milvus_r, q, k, dim, strategy, g)
                            lat["faiss"].append(tf)
                            lat["milvus"].append(tm)
                            sa, sb = {h.note_id: h.score for h in a}, {h.note_id: h.score for h in b}
                            overlap.append(len(sa.keys() & sb.keys()) / max(1, len(sa)))
                            same.append(len(a) == len(b) and np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5))
                            diff = max([diff] + [abs(sa[i] - sb[i]) for i in sa.keys() & sb.keys()])
                        p = {side: np.percentile(v, [50, 95]) for side, v in lat.items()}
                        where = {"exact": built.get(dim), "ann": built.get(dim), "local": built.get(dim),
                                 "adaptive": built.get(shortlist_dim)}[strategy]
                        if strategy == "exact" and where != "flat":
                            where = f"{where} (exact: local scan)"
                        rows.append({
                            "kind": kind, "granularity": g, "strategy": strategy, "dim": dim, "notes": len(emb),
                            "queries": len(queries),
                            "k": k, "milvus_index": where,
                            "faiss_p50_ms": float(p["faiss"][0]), "faiss_p95_ms": float(p["faiss"][1]),
                            "milvus_p50_ms": float(p["milvus"][0]), "milvus_p95_ms": float(p["milvus"][1]),
                            "milvus_vs_faiss_p50": float(p["milvus"][0] / max(p["faiss"][0], 1e-9)),
                            "overlap_at_k": float(np.mean(overlap)), "same_scores": float(np.mean(same)),
                            "max_score_diff": float(diff),
                            "faiss_build_s": faiss_build, "milvus_build_s": milvus_build,
                            "threads": os.environ.get("OMP_NUM_THREADS", ""), "loadavg": _loadavg(),
                        })
                        log(markdown(rows[-1:]).splitlines()[-1])
        finally:
            milvus_r.close()
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| kind | granularity | strategy | dim | Milvus index | FAISS p50 / p95 (ms) | Milvus p50 / p95 (ms) | Milvus / FAISS p50 "
            "| overlap@k | same scores | max score diff | build FAISS / Milvus (s) | load avg |\n"
            "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['kind']} | {r.get('granularity', 'note')} | {r['strategy']} | {r['dim']} | {r['milvus_index']} "
                     f"| {r['faiss_p50_ms']:.2f} / {r['faiss_p95_ms']:.2f} | {r['milvus_p50_ms']:.2f} / {r['milvus_p95_ms']:.2f} "
                     f"| {r['milvus_vs_faiss_p50']:.1f}x | {r['overlap_at_k']:.3f} | {r['same_scores']:.3f} | {r['max_score_diff']:.1e} "
                     f"| {r['faiss_build_s']:.1f} / {r['milvus_build_s']:.1f} | {r['loadavg']} |")
    return "\n".join(lines)
