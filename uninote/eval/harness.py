"""The evaluation harness: every query modality x index granularity x Matryoshka dim.

For each query note in the qrels, retrieve the top ``k`` other notes (the query itself excluded)
with the exact brute-force max-sim of ``uninote.index.scoring`` and score the ranking with
``uninote.eval.metrics``. Embeddings are truncated per dim (prefix + re-normalise), never
re-encoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from uninote import MATRYOSHKA_DIMS
from uninote.embeddings import GRANULARITIES, QUERY_MODALITIES, NoteEmbeddings
from uninote.eval.metrics import mrr_at_k, ndcg_at_k, r_cap_at_k
from uninote.index.scoring import maxsim_scores, maxsim_scores_single, top_k

METRICS = ("ndcg@10", "r_cap@10", "mrr@10")
_CHUNK = 256  # queries scored per matmul


@dataclass
class EvalReport:
    n_notes: int
    n_queries: int
    results: list[dict] = field(default_factory=list)
    per_query: dict[tuple[str, str, int], dict[str, float]] = field(default_factory=dict)

    def get(self, modality: str, granularity: str, dim: int, metric: str = "ndcg@10") -> float:
        for r in self.results:
            if (r["query_modality"], r["granularity"], r["dim"]) == (modality, granularity, dim):
                return r[metric]
        raise KeyError(f"no result for {modality}/{granularity}/{dim}")


def resolve_dims(requested: Iterable[int], full_dim: int) -> list[int]:
    """Requested prefixes that fit the model, plus its full dim (so a 384-d baseline reports 384)."""
    dims = sorted({d for d in requested if d < full_dim} | {full_dim})
    return [d for d in dims if d > 0]


def _float32(emb: NoteEmbeddings) -> NoteEmbeddings:
    """``emb`` with float32 vectors: stored float16 ones (memory-mapped, at full dim) are read back
    as float32 once, so every score is a float32 product (numpy's float16 matmul is slow and half precision)."""
    if all(getattr(emb, g).dtype == np.float32 for g in ("note", "text", "image", "region")):
        return emb
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return NoteEmbeddings(emb.note_ids, f32(emb.note), f32(emb.text), f32(emb.image), emb.image_owner,
                          f32(emb.region), emb.region_owner, emb.region_image, emb.model_version, emb.meta)


def _query_rows(emb: NoteEmbeddings, qrels: Mapping[str, Mapping[str, int]],
                max_queries: int | None, seed: int) -> list[int]:
    rows = [emb.row(q) for q in sorted(qrels) if q in emb._row]
    if max_queries is not None and len(rows) > max_queries:
        rng = np.random.default_rng(seed)
        rows = sorted(rng.choice(rows, size=max_queries, replace=False).tolist())
    return rows


def _rankings(emb: NoteEmbeddings, rows: Sequence[int], modality: str, granularity: str,
              k: int) -> dict[int, list[str]]:
    """Top-k note ids for each query row that has the query part this modality needs."""
    vectors, owner = emb.vectors(granularity)
    n = len(emb)
    queries = {r: emb.query(r).vectors(modality, granularity) for r in rows}
    queries = {r: q for r, q in queries.items() if q is not None}
    out: dict[int, list[str]] = {}
    single = [r for r, q in queries.items() if len(q) == 1]
    for start in range(0, len(single), _CHUNK):
        chunk = single[start:start + _CHUNK]
        scores = maxsim_scores_single(np.vstack([queries[r] for r in chunk]), vectors, owner, n)
        for r, s in zip(chunk, scores):
            out[r] = [emb.note_ids[i] for i in top_k(s, k, exclude=[r])]
    for r, q in queries.items():
        if len(q) > 1:
            s = maxsim_scores(q, vectors, owner, n)
            out[r] = [emb.note_ids[i] for i in top_k(s, k, exclude=[r])]
    return out


def evaluate(embeddings: NoteEmbeddings, qrels: Mapping[str, Mapping[str, int]],
             dims: Iterable[int] = MATRYOSHKA_DIMS,
             modalities: Sequence[str] = QUERY_MODALITIES,
             granularities: Sequence[str] = GRANULARITIES, k: int = 10,
             mrr_min_grade: int = 1, max_queries: int | None = None, seed: int = 0,
             keep_per_query: bool = False) -> EvalReport:
    """Evaluate ``embeddings`` against graded ``qrels`` at every (modality, granularity, dim)."""
    for m in modalities:
        if m not in QUERY_MODALITIES:
            raise ValueError(f"unknown query modality {m!r}; expected one of {QUERY_MODALITIES}")
    for g in granularities:
        if g not in GRANULARITIES:
            raise ValueError(f"unknown granularity {g!r}; expected one of {GRANULARITIES}")
    rows = _query_rows(embeddings, qrels, max_queries, seed)
    # grades restricted to notes that exist, never the query itself
    grades = {r: {c: g for c, g in qrels[embeddings.note_ids[r]].items()
                  if c in embeddings._row and c != embeddings.note_ids[r]} for r in rows}
    report = EvalReport(n_notes=len(embeddings), n_queries=len(rows))
    for dim in resolve_dims(dims, embeddings.dim):
        emb = _float32(embeddings.truncate(dim))
        for modality in modalities:
            for granularity in granularities:
                if len(emb.vectors(granularity)[0]) == 0:
                    continue  # e.g. a text-only baseline has no image vectors
                ranked = _rankings(emb, rows, modality, granularity, k)
                scores = {m: [] for m in METRICS}
                per_query = {}
                for r, ids in ranked.items():
                    nd = ndcg_at_k(ids, grades[r], k)
                    if nd is None:
                        continue
                    scores["ndcg@10"].append(nd)
                    scores["r_cap@10"].append(r_cap_at_k(ids, grades[r], k))
                    scores["mrr@10"].append(mrr_at_k(ids, grades[r], k, mrr_min_grade))
                    per_query[embeddings.note_ids[r]] = nd
                if not scores["ndcg@10"]:
                    continue
                row = {"query_modality": modality, "granularity": granularity, "dim": dim}
                row.update({m: float(np.mean(v)) for m, v in scores.items()})
                row["n_queries"] = len(scores["ndcg@10"])
                report.results.append(row)
                if keep_per_query:
                    report.per_query[(modality, granularity, dim)] = per_query
    return report


def markdown_table(results: Sequence[dict], title: str = "") -> str:
    """One row per (modality, granularity), one ndcg@10 column per dim, plus r_cap/mrr at full dim."""
    dims = sorted({r["dim"] for r in results})
    keys = sorted({(r["query_modality"], r["granularity"]) for r in results},
                  key=lambda t: (QUERY_MODALITIES.index(t[0]), GRANULARITIES.index(t[1])))
    by = {(r["query_modality"], r["granularity"], r["dim"]): r for r in results}
    full = dims[-1] if dims else 0
    head = ["query", "index"] + [f"ndcg@10 d={d}" for d in dims] + [f"r_cap@10 d={full}", f"mrr@10 d={full}"]
    lines = ([f"### {title}", ""] if title else []) + [
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, g in keys:
        cells = [m, g]
        cells += [f"{by[(m, g, d)]['ndcg@10']:.4f}" if (m, g, d) in by else "–" for d in dims]
        last = by.get((m, g, full))
        cells += [f"{last['r_cap@10']:.4f}", f"{last['mrr@10']:.4f}"] if last else ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
