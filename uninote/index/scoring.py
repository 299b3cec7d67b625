"""Brute-force scoring: the exact reference every index and the evaluation harness agree with.

A query is a set of vectors Q (q, D); a candidate note is a set of vectors C_n (one for the
``note``/``text`` granularities, several for ``image``/``region``). The note's score is the
late-interaction (Chamfer / ColBERT) max-sim

    s(Q, C_n) = (1/|Q|) * sum_{q in Q} max_{c in C_n} <q, c>

which for a single query vector is plain max-sim and for single-vector notes is the dot product.
Notes with no vector at a granularity score -inf.
"""

from __future__ import annotations

import numpy as np


def _per_note_max(sims: np.ndarray, owner: np.ndarray, n_notes: int) -> np.ndarray:
    """Row-wise max of ``sims`` (q, M) over the vectors each note owns -> (q, n_notes)."""
    out = np.full((sims.shape[0], n_notes), -np.inf, dtype=np.float32)
    if sims.shape[1] == 0:
        return out
    if np.all(owner[1:] >= owner[:-1]):  # contiguous owners: one vectorised reduce
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        out[:, owner[starts]] = np.maximum.reduceat(sims, starts, axis=1)
    else:
        for qi in range(sims.shape[0]):
            np.maximum.at(out[qi], owner, sims[qi])
    return out


def maxsim_scores(query: np.ndarray, vectors: np.ndarray, owner: np.ndarray | None,
                  n_notes: int) -> np.ndarray:
    """Scores (n_notes,) of every note for the query vectors ``query`` (q, D); float32 products
    (float16 vectors are promoted)."""
    query = np.atleast_2d(query).astype(np.float32, copy=False)
    sims = query @ vectors.T  # (q, M)
    if owner is None:
        return sims.mean(axis=0)
    return _per_note_max(sims, np.asarray(owner), n_notes).mean(axis=0)


def maxsim_scores_single(queries: np.ndarray, vectors: np.ndarray, owner: np.ndarray | None,
                         n_notes: int) -> np.ndarray:
    """Scores (n_queries, n_notes) for many single-vector queries at once (one matmul, float32)."""
    sims = np.atleast_2d(queries).astype(np.float32, copy=False) @ vectors.T
    if owner is None:
        return sims
    return _per_note_max(sims, np.asarray(owner), n_notes)


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | list[int] | None = None) -> np.ndarray:
    """Row indices of the k best finite scores, best first (ties broken by lower row)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    if exclude is not None and len(exclude):
        scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) == 0:
        return finite
    k = min(k, len(finite))
    part = finite[np.argpartition(-scores[finite], k - 1)[:k]]
    return part[np.lexsort((part, -scores[part]))]
