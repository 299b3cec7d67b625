"""The ``Retriever``'s side of Milvus: its collections built from its local tables, and its
searches answered from them (``uninote.index.milvus`` holds the client, ``MilvusIndex``).

Single-vector granularities (``note``, ``text``): one search of the collection at ``dim``; a
query of several vectors searches their mean (the mean inner product), IVF-PQ scores are
re-ranked at full dim from the local tables.

Multi-vector granularities (``image``, ``region``) keep the in-process meaning
(``uninote.index.scoring``): a note's score is the mean over the query vectors of the max inner
product to its vectors. They use Milvus grouping search (``group_by_field="note_id"``, one hit per
note: its best vector), which Milvus Lite serves too: one batched call gives, for every query
vector, the ``L`` notes with the best max. On a FLAT collection the result is exact: with one
query vector that list is the answer; with several, the notes found in any list get their missing
per-vector maxima from a second grouping search filtered to them (``note_id in [...]``), are
scored by the mean, and the result stands once the ``want``-th score beats the bound
``mean_i(L-th score of list i)`` that no unseen note can exceed (Fagin's threshold test);
otherwise ``L`` grows (x4) and the search repeats; past Milvus's topk cap (16,384) the retriever
falls back to its local scan. On HNSW/IVF-PQ the union of the lists (at least
``local_candidates`` notes per query vector) is re-ranked with exact max-sim from the local
tables, as the in-process ``ann`` re-ranks its candidates.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from uninote.embeddings import truncate
from uninote.index import milvus as store
from uninote.index.ann import milvus_kind
from uninote.index.milvus import GRANULARITIES, MULTI
from uninote.index.strategies import ranked

if TYPE_CHECKING:
    from uninote.index.retriever import Retriever

log = logging.getLogger("uninote.index.milvus")


def live_blocks(r: "Retriever", granularity: str, dim: int):
    """(note id per row, unit vectors at ``dim``) of the retriever's live notes, block by block
    (a multi-vector table's blocks cut between notes, so a note's rows come in one block)."""
    table = r.table(granularity, dim)
    for start, block in table.blocks():
        slots = table.row_owner(np.arange(start, start + len(block)))
        live = np.flatnonzero(r.alive[slots])
        yield [r.note_ids[s] for s in slots[live]], block[live]


def live_rows(r: "Retriever", granularity: str) -> int:
    table = r.table(granularity, r.full_dim)
    if not table.multi:
        return len(r)
    return int(np.count_nonzero(r.alive[table.owner])) if len(table) else 0


def build_collection(r: "Retriever", granularity: str, dim: int) -> int:
    kind = milvus_kind(live_rows(r, granularity), r.config)
    return r.milvus.build(granularity, dim, kind, live_blocks(r, granularity, dim), r.config)


def collection_kind(r: "Retriever", granularity: str, dim: int) -> str | None:
    m = r.milvus
    if m is None or granularity not in GRANULARITIES:
        return None
    with m.lock:  # concurrent first searches build it once
        kind = m.open(granularity, dim)
        if kind is None:
            if granularity in MULTI and live_rows(r, granularity) == 0:
                return None  # no vectors at all: nothing to search (the local scan finds none)
            build_collection(r, granularity, dim)
            kind = m.open(granularity, dim)
    return kind


def search(r: "Retriever", query: np.ndarray, granularity: str, dim: int, want: int, exact: bool = False):
    """``Retriever.milvus_search``: ranked (slots, scores), or None where Milvus is not searched."""
    kind = collection_kind(r, granularity, dim)
    if kind is None or (exact and kind != "flat"):
        return None
    if granularity in MULTI:
        return search_multi(r, query, granularity, dim, want, kind)
    q = truncate(np.atleast_2d(query), dim).mean(axis=0)  # several query vectors: mean inner product
    fetch = want * r.config.rerank_factor if kind == "ivfpq" else want
    ids, scores = r.milvus.search(granularity, dim, q, fetch, r.config)
    slots = np.array([r._slot.get(i, -1) for i in ids], np.int64)
    known = slots >= 0  # a row this retriever does not hold (added by another process) is skipped
    slots, scores = slots[known], scores[known]
    if kind == "ivfpq":  # PQ scores are lossy: re-rank with exact full-dim vectors
        scores = r.table(granularity, r.full_dim).score_slots(query, slots)
    return ranked(slots, scores, want)


CERTIFY_MARGIN = 1e-6  # the want-th mean must beat the unseen notes' bound by this much


def search_multi(r: "Retriever", query: np.ndarray, granularity: str, dim: int, want: int, kind: str):
    """Late interaction (mean over query vectors of the per-note max) through grouping search.

    FLAT: exact, the scores Milvus's (see the module docstring for the bound that certifies the
    top ``want``); None (the local scan) when the bound needs more than Milvus's topk cap.
    HNSW / IVF-PQ: the union of the per-vector lists, re-ranked exactly from the local tables."""
    m, cfg = r.milvus, r.config
    q = truncate(np.atleast_2d(query), dim)
    if kind != "flat":  # as the in-process ann: at least local_candidates per query vector
        limit = max(want, cfg.local_candidates)
    else:
        limit = max(want, 1) * (1 if len(q) == 1 else 2)
    limit = min(limit, store.MAX_LIMIT)  # a list shorter than limit must mean "no more notes"
    while True:
        lists = m.search_groups(granularity, dim, q, limit, cfg)
        if kind != "flat":
            ids = sorted({i for found, _ in lists for i in found})
            slots = np.array([r._slot[i] for i in ids if i in r._slot], np.int64)
            table = r.table(granularity, r.full_dim if kind == "ivfpq" else dim)
            scores = table.score_slots(query if kind == "ivfpq" else q, slots)
            return ranked(slots, scores, want)
        ids, scores = _mean_of_maxima(m, granularity, dim, q, lists, cfg)
        slots = np.array([r._slot.get(i, -1) for i in ids], np.int64)
        known = slots >= 0  # rows of notes this retriever does not hold are skipped
        slots, scores = ranked(slots[known], scores[known], want)
        full = [len(found) >= limit for found, _ in lists]
        if len(q) == 1 or not all(full):  # one query vector: its list is the exact top;
            # a list shorter than asked holds every note with rows, so no note is unseen
            return slots, scores
        bound = float(np.mean([s[-1] for _, s in lists]))
        if len(slots) >= want and scores[want - 1] > bound + CERTIFY_MARGIN:
            return slots, scores
        if limit >= store.MAX_LIMIT:
            log.info("Milvus %s search at dim %d: top %d not certified within topk %d; local scan",
                     granularity, dim, want, store.MAX_LIMIT)
            return None
        limit = min(limit * 4, store.MAX_LIMIT)


FILL_IDS = 4_096  # note ids per filtered grouping search


def _mean_of_maxima(m: store.MilvusIndex, granularity: str, dim: int, q: np.ndarray, lists, config):
    """(note ids, mean over query vectors of each note's max) for every note in any list; the
    maxima a list lacks come from a grouping search filtered to those notes."""
    ids = list(dict.fromkeys(i for found, _ in lists for i in found))
    if len(q) == 1:
        return ids, lists[0][1]
    col = {i: j for j, i in enumerate(ids)}
    maxima = np.full((len(q), len(ids)), np.nan, np.float64)
    for qi, (found, s) in enumerate(lists):
        maxima[qi, [col[i] for i in found]] = s
    missing = np.flatnonzero(np.isnan(maxima).any(axis=0))
    step = min(FILL_IDS, store.MAX_LIMIT)
    for start in range(0, len(missing), step):
        among = [ids[j] for j in missing[start:start + step]]
        filled = m.search_groups(granularity, dim, q, len(among), config, among=among)
        for qi, (found, s) in enumerate(filled):
            for i, v in zip(found, s):
                if np.isnan(maxima[qi, col[i]]):
                    maxima[qi, col[i]] = v
    maxima[np.isnan(maxima)] = -np.inf  # cannot happen on a FLAT collection: every row is scored
    return ids, maxima.mean(axis=0).astype(np.float32)
