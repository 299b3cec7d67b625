"""The all-notes I2I table: every note's top-k neighbours, computed in blocks over index parts.

An I2I job scores query blocks (``query_block`` notes at a time) against *index parts* (row ranges
of the note matrix; one per embedding shard), keeps each part's best candidates, merges them and
drops the query itself and its exact duplicates, with exactly the rules of ``Retriever.search``
(note granularity, note queries):

- ``exact``     scores at ``dim`` (the re-normalised prefix of the stored rows) against every row;
- ``adaptive``  exact shortlist of ``max(shortlist, want)`` at ``shortlist_dim``, re-ranked at ``dim``;
- ``ann``       the part's faiss index at ``dim`` (kind by the *total* note count, as
                ``IndexConfig.kind='auto'`` picks it: flat, i.e. exact, up to ``flat_max``), re-scored
                exactly at ``dim``;
- ties go to the lower row; ``want = k + 8`` candidates are fetched, and doubled for the queries
  that lose more than 8 to exclusion (self, and full-dim similarity >= ``DUPLICATE_SIM``).

Every part's candidates are the part's own top ``want`` (``adaptive``: its own shortlist, with
their ``dim`` and full-dim scores), so the merge over parts is the single-table result: the same
lists whether the parts live in this process (``search_local``) or in Ray actors on a cluster
(``uninote.cluster.i2i``), for ``exact`` and ``adaptive``. Memory per part: its rows at ``dim``
(and at ``shortlist_dim``) in RAM, float32; the full-dim rows stay memory-mapped and are read
only for the candidates' duplicate check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import faiss
import numpy as np

from uninote.embeddings import l2_normalize, truncate
from uninote.errors import ConfigError
from uninote.index.ann import IndexConfig, ann_search, build_ann_streaming, choose_kind
from uninote.index.retriever import DUPLICATE_SIM

I2I_STRATEGIES = ("exact", "adaptive", "ann")
SLACK = 8  # extra candidates fetched for the exclusions, as Retriever.search does
ROW_BLOCK = 16_384  # index rows scored per matrix product (the tie-exact path)
TIE = 1e-6  # scores this close count as tied at a cut-off


@dataclass
class I2ISettings:
    """What an I2I table holds; written into every output file's metadata."""

    k: int = 50  # neighbours per note
    dim: int = 64  # Matryoshka dim scored (adaptive: the re-rank dim)
    strategy: str = "exact"  # exact | adaptive | ann
    shortlist: int = 200  # adaptive: shortlist length K'
    shortlist_dim: int = 64  # adaptive: dim of the shortlist pass (below dim; at dim it is exact)
    query_block: int = 1024  # notes per query block (one output part file per block)
    index: dict = field(default_factory=dict)  # ann: IndexConfig fields (kind, ef_search, ...)

    def validate(self, full_dim: int | None = None) -> "I2ISettings":
        if self.strategy not in I2I_STRATEGIES:
            raise ConfigError(f"i2i strategy {self.strategy!r} unknown; use one of {', '.join(I2I_STRATEGIES)}")
        for name in ("k", "dim", "shortlist", "shortlist_dim", "query_block"):
            if getattr(self, name) < 1:
                raise ConfigError(f"i2i {name} must be >= 1, got {getattr(self, name)}")
        if full_dim is not None and self.dim > full_dim:
            raise ConfigError(f"i2i dim {self.dim} exceeds the embeddings' full dim {full_dim}")
        self.index_config()
        return self

    def index_config(self) -> IndexConfig:
        try:
            return IndexConfig(**self.index).validate()
        except TypeError as exc:
            raise ConfigError(f"i2i index settings {self.index}: {exc}") from None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Candidates:
    """Per query (rows) the candidates, best first: global ``slots`` (-1 = none), the ``key`` they
    were chosen by (adaptive: the shortlist score), ``scores`` at dim and ``full`` full-dim scores."""

    slots: np.ndarray
    key: np.ndarray
    scores: np.ndarray
    full: np.ndarray

    @classmethod
    def empty(cls, nq: int) -> "Candidates":
        return cls(np.full((nq, 0), -1, np.int64), *(np.zeros((nq, 0), np.float32) for _ in range(3)))

    def take(self, order: np.ndarray) -> "Candidates":
        """Columns ``order`` (nq, w) of every row."""
        rows = np.arange(len(order))[:, None]
        return Candidates(*(a[rows, order] for a in (self.slots, self.key, self.scores, self.full)))

    def head(self, n: int) -> "Candidates":
        return Candidates(*(a[:, :n] for a in (self.slots, self.key, self.scores, self.full)))


def _order(slots: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per row, the column order best score first, ties to the lower slot, missing (-1) last."""
    return np.lexsort((np.where(slots < 0, np.iinfo(np.int64).max, slots), -scores), axis=-1)


def merge(parts: list[Candidates], keep: int) -> Candidates:
    """The best ``keep`` candidates per query over several parts' candidates (by key, then slot)."""
    both = Candidates(*(np.concatenate([getattr(p, f) for p in parts], axis=1)
                        for f in ("slots", "key", "scores", "full")))
    return both.take(_order(both.slots, both.key)).head(keep)


def top_per_row(scores: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns (nq, w) of each row's ``w = min(want, n)`` largest scores, best first, ties to the
    lower column, and their scores; exact. A threshold from per-64-column maxima (at least w
    scores reach it) leaves few candidates to sort, instead of partitioning every row."""
    nq, n = scores.shape
    w = min(want, n)
    if w == 0:
        return np.zeros((nq, 0), np.int64), np.zeros((nq, 0), np.float32)
    full = n // 64 * 64
    if full // 64 >= 4 * w:
        maxima = scores[:, :full].reshape(nq, -1, 64).max(axis=2)
        pivot = maxima.shape[1] - w
    else:
        maxima, pivot = scores, n - w
    threshold = np.partition(maxima, pivot, axis=1)[:, pivot]
    qi, col = np.nonzero(scores >= threshold[:, None])
    vals = scores[qi, col]
    order = np.lexsort((col, -vals, qi))
    qi, col, vals = qi[order], col[order], vals[order]
    rank = np.arange(len(qi)) - np.searchsorted(qi, np.arange(nq))[qi]
    hit = rank < w
    out_cols, out_vals = np.zeros((nq, w), np.int64), np.zeros((nq, w), np.float32)
    out_cols[qi[hit], rank[hit]] = col[hit]
    out_vals[qi[hit], rank[hit]] = vals[hit]
    return out_cols, out_vals


def _truncated_rows(vectors, start: int, stop: int, dim: int) -> np.ndarray:
    """Rows at ``dim`` in RAM: the re-normalised prefix, or the stored rows at the full dim (as
    ``Retriever.table`` reads them)."""
    out = np.empty((stop - start, dim), np.float32)
    for a in range(start, stop, 65_536):
        b = min(a + 65_536, stop)
        block = np.asarray(vectors[a:b], np.float32)
        out[a - start:b - start] = block if dim == block.shape[1] else truncate(block, dim)
    return out


class IndexPart:
    """Rows ``start..stop-1`` of the note matrix ``vectors`` (full dim; a memory map is fine), ready
    to give the candidates of query blocks under ``settings``. ``n_total``: notes in the whole table
    (chooses the ann index kind)."""

    def __init__(self, vectors, start: int, stop: int, settings: I2ISettings, n_total: int):
        self.start, self.stop, self.settings = start, stop, settings
        self.full_dim = int(vectors.shape[1])
        self._vectors = vectors
        self.table = _truncated_rows(vectors, start, stop, settings.dim)
        self.low = None
        if settings.strategy == "adaptive" and settings.shortlist_dim < settings.dim:
            self.low = _truncated_rows(vectors, start, stop, settings.shortlist_dim)
        self.index = None
        if settings.strategy == "ann":
            config = settings.index_config()
            self.config = config
            self.index = build_ann_streaming(self.table, choose_kind(n_total, config), config)

    def __len__(self) -> int:
        return self.stop - self.start

    def _full_rows(self, rows: np.ndarray) -> np.ndarray:
        """Full-dim stored rows (global row numbers in this part)."""
        if self.settings.dim == self.full_dim:
            return self.table[rows - self.start]
        flat = rows.reshape(-1)
        order = np.argsort(flat, kind="stable")
        out = np.empty((len(flat), self.full_dim), np.float32)
        out[order] = np.asarray(self._vectors[flat[order]], np.float32)
        return out.reshape(rows.shape + (self.full_dim,))

    def _scores_of(self, table: np.ndarray, q: np.ndarray, slots: np.ndarray) -> np.ndarray:
        got = slots >= 0
        out = np.full(slots.shape, -np.inf, np.float32)
        local = np.where(got, slots - self.start, 0)
        out[got] = np.einsum("qwd,qd->qw", table[local], q)[got]
        return out

    def _exact(self, table: np.ndarray, q: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's best ``want`` rows of ``table`` (global slots) and their scores.

        faiss' blocked search fetches one more than asked: where that extra one ties with the last
        (within ``TIE``), the cut could fall inside a group of equal scores, and those queries are
        scored again with ``top_per_row``, which breaks ties to the lower row as the Retriever does.
        """
        w = min(want, len(table))
        if w == 0:
            return np.full((len(q), 0), -1, np.int64), np.zeros((len(q), 0), np.float32)
        fetch = min(w + 1, len(table))
        got, rows = faiss.knn(np.ascontiguousarray(q), table, fetch, metric=faiss.METRIC_INNER_PRODUCT)
        slots, scores = rows[:, :w].astype(np.int64), got[:, :w]
        if fetch > w:
            tied = np.flatnonzero((rows[:, w] >= 0) & (got[:, w] >= scores[:, w - 1] - TIE))
            if len(tied):
                slots[tied], scores[tied] = self._exact_numpy(table, q[tied], w)
        slots = slots + self.start
        order = _order(slots, scores)
        rows_i = np.arange(len(q))[:, None]
        return slots[rows_i, order], scores[rows_i, order]

    def _exact_numpy(self, table: np.ndarray, q: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        """``_exact`` by plain matrix products and ``top_per_row`` (part-local rows)."""
        best_slots, best = np.full((len(q), 0), -1, np.int64), np.zeros((len(q), 0), np.float32)
        rows = np.arange(len(q))[:, None]
        for a in range(0, len(table), ROW_BLOCK):
            cols, vals = top_per_row(q @ table[a:a + ROW_BLOCK].T, want)
            slots = np.concatenate([best_slots, cols + a], axis=1)
            scores = np.concatenate([best, vals], axis=1)
            order = _order(slots, scores)[:, :want]
            best_slots, best = slots[rows, order], scores[rows, order]
        return best_slots, best

    def candidates(self, queries: np.ndarray, want: int) -> Candidates:
        """This part's candidates for full-dim, normalised ``queries`` (nq, D)."""
        s = self.settings
        if len(self) == 0:
            return Candidates.empty(len(queries))
        q = truncate(queries, s.dim)
        if self.index is not None:
            _, rows = ann_search(self.index, q, want, self.config)
            slots = np.where(rows >= 0, rows + self.start, -1)
            scores = self._scores_of(self.table, q, slots)
            order = _order(slots, scores)
            rows_i = np.arange(len(q))[:, None]
            slots, scores = slots[rows_i, order], scores[rows_i, order]
            key = scores
        elif self.low is not None:
            slots, key = self._exact(self.low, truncate(queries, s.shortlist_dim), max(s.shortlist, want))
            scores = self._scores_of(self.table, q, slots)
        else:
            slots, key = self._exact(self.table, q, want)
            scores = key
        full = scores if s.dim == self.full_dim else self._full_scores(queries, slots)
        return Candidates(slots, key, scores, full)

    def _full_scores(self, queries: np.ndarray, slots: np.ndarray) -> np.ndarray:
        got = slots >= 0
        out = np.full(slots.shape, -np.inf, np.float32)
        rows = self._full_rows(np.where(got, slots, self.start))
        out[got] = np.einsum("qwd,qd->qw", rows, queries)[got]
        return out


def part_bounds(vectors) -> list[tuple[int, int]]:
    """Index parts of a note matrix: one per embedding shard (a ``ShardedArray``), else one."""
    if hasattr(vectors, "blocks"):
        return [(start, start + len(p)) for start, p in vectors.blocks()]
    return [(0, len(vectors))]


def index_bounds(bounds: list[tuple[int, int]], strategy: str) -> list[tuple[int, int]]:
    """The parts one process searches: ``exact``/``adaptive`` keep the shards (the same products
    wherever they run); ``ann`` joins contiguous shards into one index, since a graph search costs
    about as much per index whatever its size."""
    if strategy != "ann" or not bounds:
        return bounds
    return [(bounds[0][0], bounds[-1][1])]


def query_vectors(vectors, start: int, stop: int) -> np.ndarray:
    """Full-dim queries of rows ``start..stop-1``, normalised as ``Retriever.search`` normalises them."""
    return l2_normalize(np.asarray(vectors[start:stop], np.float32))


def finish(candidates: Candidates, query_slots: np.ndarray, settings: I2ISettings, want: int
           ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Per query its (neighbour slots, scores): the adaptive re-rank, then self and exact duplicates
    dropped and cut to k; and the query rows that kept fewer than k (to fetch again, more)."""
    c = candidates
    if settings.strategy == "adaptive":
        c = c.take(_order(c.slots, c.scores))
    c = c.head(want)
    keep = (c.slots >= 0) & (c.slots != query_slots[:, None]) & ~(c.full >= DUPLICATE_SIM)
    keep &= np.isfinite(c.scores)
    out, short = [], []
    for i in range(len(query_slots)):
        slots, scores = c.slots[i][keep[i]], c.scores[i][keep[i]]
        out.append((slots[:settings.k], scores[:settings.k]))
        if len(slots) < settings.k:
            short.append(i)
    return out, np.asarray(short, np.int64)


def neighbours_of_block(search: Callable[[np.ndarray, int], Candidates], queries: np.ndarray,
                        query_slots: np.ndarray, settings: I2ISettings, n_total: int,
                        first: Candidates | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-k (slots, scores) per query: ``search(queries, want)`` gives the merged candidates of
    every part (``first``: those of the first round, ``want = k + SLACK``, fetched already);
    queries short after the exclusions are asked again with twice the candidates."""
    want = settings.k + SLACK
    todo = np.arange(len(queries))
    result: list = [None] * len(queries)
    while len(todo):
        candidates = first if first is not None else search(queries[todo], want)
        first = None
        got, short = finish(candidates, query_slots[todo], settings, want)
        for i, hit in zip(todo, got):
            result[i] = hit
        if want >= n_total:
            break
        todo, want = todo[short], want * 2
    return result


def merged_search(parts: list, settings: I2ISettings) -> Callable[[np.ndarray, int], Candidates]:
    """``search(queries, want)`` over local ``IndexPart``s: each part's candidates, merged."""

    def search(queries: np.ndarray, want: int) -> Candidates:
        keep = max(settings.shortlist, want) if settings.strategy == "adaptive" else want
        return merge([p.candidates(queries, want) for p in parts], keep)

    return search
