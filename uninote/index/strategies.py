"""Retrieval strategies: each turns a query into the best ``want`` live notes, best first.

Every strategy returns ``(slots, scores)`` (numpy, best first, dead notes already dropped); the
``Retriever`` then removes the query itself and its exact duplicates and cuts to k.

- ``exact``        brute-force scan of the table at ``dim`` (the reference; matches scoring.py);
                   with Milvus, the FLAT collection at ``dim`` (image/region: grouping search
                   per query vector, aggregated per note; ``uninote.index.milvus``).
- ``ann``          the table's faiss index at ``dim`` (HNSW: exact scores at ``dim``; IVF-PQ:
                   shortlist of ``want * rerank_factor`` re-scored with exact full-dim vectors;
                   multi-vector: ``local_candidates`` vectors per query vector, then exact max-sim
                   of their notes). A ``flat`` index kind makes ``ann`` exact. With Milvus, the
                   collection at ``dim``, whatever its kind (image/region on HNSW: the notes of
                   the per-query-vector grouping searches, re-ranked by exact max-sim locally).
- ``adaptive``     Matryoshka adaptive retrieval: exact shortlist of ``shortlist`` (K', default 200)
                   notes at ``shortlist_dim`` (default 64), re-ranked exactly at ``dim`` (default
                   full). Reads shortlist_dim/dim of the bytes of an exact scan (plus K'*dim*4).
                   With Milvus, the shortlist comes from the collection at ``shortlist_dim``
                   and the re-rank reads the local tables.
- ``local``        late interaction over a multi-vector granularity (``image`` or ``region``;
                   a single-vector ``granularity`` means ``local_granularity``): note score =
                   Chamfer mean over query vectors of the max cosine to the note's vectors, exactly
                   as ``scoring.maxsim_scores``; uses ANN candidates when the table is large.
                   With Milvus, the collection at ``dim`` (as ``exact``/``ann`` above).
- ``global+local`` exact global shortlist (K' notes at ``granularity`` note/text, at ``dim``)
                   re-ranked by the weighted mean ``(global + w * local) / (1 + w)`` (``w`` is
                   ``local_weight``, default 1: the plain mean of the two cosines), local being the
                   max-sim at ``local_granularity`` and ``dim``. A shortlisted note without local
                   vectors counts local = 0 (no local evidence); a query without local vectors
                   (text) ranks by global alone. Scores are therefore cosines in [-1, 1], on the
                   same scale as every other strategy; dividing by ``1 + w`` leaves the order of
                   ``global + w * local`` unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from uninote.embeddings import truncate
from uninote.index.ann import ann_search, index_kind
from uninote.index.vectors import top_slots

if TYPE_CHECKING:
    from uninote.index.retriever import Retriever

STRATEGIES = ("exact", "ann", "adaptive", "local", "global+local")
SINGLE = ("note", "text")
MULTI = ("image", "region")


def ranked(slots: np.ndarray, scores: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``want`` of (slots, scores), best first, ties by lower slot, non-finite dropped."""
    order = np.lexsort((slots, -scores))[:want]
    order = order[np.isfinite(scores[order])]
    return slots[order], scores[order]


_ranked = ranked


def exact(r: "Retriever", query: np.ndarray, granularity: str, dim: int, want: int):
    found = r.milvus_search(query, granularity, dim, want, exact=True)
    if found is not None:
        return found
    scores = r.table(granularity, dim).score_all(truncate(query, dim))
    slots = top_slots(scores, want, r.dead_slots)
    return slots, scores[slots]


def ann(r: "Retriever", query: np.ndarray, granularity: str, dim: int, want: int):
    found = r.milvus_search(query, granularity, dim, want)
    if found is not None:
        return found
    index = r.ann_index(granularity, dim)
    if index is None:  # flat kind: the exact scan is the index
        return exact(r, query, granularity, dim, want)
    cfg = r.config
    table = r.table(granularity, dim)
    q = truncate(query, dim)
    kind = index_kind(index)
    fetch = want + len(r.dead_slots)
    if table.multi:
        fetch = max(cfg.local_candidates, fetch)
    elif kind == "ivfpq":
        fetch *= cfg.rerank_factor
    _, rows = ann_search(index, q, fetch, cfg)
    rows = rows[rows >= 0]
    slots = np.unique(table.row_owner(rows))
    slots = slots[r.alive[slots]]
    if kind == "ivfpq":  # PQ scores are lossy: re-rank with exact full-dim vectors
        scores = r.table(granularity, r.full_dim).score_slots(query, slots)
    else:
        scores = table.score_slots(q, slots)
    return _ranked(slots, scores, want)


def adaptive(r: "Retriever", query: np.ndarray, granularity: str, dim: int, want: int):
    low = min(r.shortlist_dim, dim)
    if low >= dim:
        return exact(r, query, granularity, dim, want)
    found = r.milvus_search(query, granularity, low, max(r.shortlist, want))
    slots, _ = found if found is not None else exact(r, query, granularity, low, max(r.shortlist, want))
    scores = r.table(granularity, dim).score_slots(truncate(query, dim), slots)
    return _ranked(slots, scores, want)


def local(r: "Retriever", query: np.ndarray, granularity: str, dim: int, want: int):
    if r.ann_index(granularity, dim, build=False) is not None or r.kind_for(granularity) != "flat":
        return ann(r, query, granularity, dim, want)
    return exact(r, query, granularity, dim, want)


def global_local(r: "Retriever", global_query: np.ndarray, local_query: np.ndarray | None,
                 granularity: str, local_granularity: str, dim: int, want: int):
    slots, g = exact(r, global_query, granularity, dim, max(r.shortlist, want))
    if local_query is None:
        return _ranked(slots, g, want)
    loc = r.table(local_granularity, dim).score_slots(truncate(local_query, dim), slots)
    bonus = np.where(np.isfinite(loc), loc, 0.0)
    w = r.local_weight
    combined = ((g + w * bonus) / (1.0 + w)).astype(np.float32)
    return _ranked(slots, combined, want)
