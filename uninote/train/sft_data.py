"""Training pairs and batches for stage-1 SFT.

Pairs come from ``corpus.pairs`` (query, positive, hard negatives); a corpus without pairs but with
qrels gets one pair per query (best-graded note as positive, grade-0 notes as negatives). A batch
is the set of unique notes its pairs touch, so the model runs once per step, plus the integer index
tensors ``SFTObjective`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from uninote.errors import CorpusError
from uninote.train.sft_objective import first_rows


@dataclass
class PairTable:
    q: np.ndarray  # (P,) note rows
    p: np.ndarray  # (P,)
    neg: np.ndarray  # (P, K), -1 = none
    relevant: list[set[int]]  # per note row: rows that must not serve as its in-batch negatives


def pair_table(corpus, hard_negatives: int, mask_grade: int = 3) -> PairTable:
    """Rows of the corpus pairs (or pairs derived from qrels), ready for batching."""
    index = corpus.index_of
    triples = [(pr.query_id, pr.positive_id, pr.negative_ids) for pr in corpus.pairs]
    if not triples:
        for qid, grades in sorted(corpus.qrels.items()):
            cands = sorted((g, c) for c, g in grades.items() if c != qid and c in corpus and g > 0)
            if qid in corpus and cands:
                negs = sorted(c for c, g in grades.items() if g == 0 and c in corpus)
                triples.append((qid, cands[-1][1], negs))
    if not triples:
        raise CorpusError("no training pairs: the corpus has neither pairs.jsonl nor qrels.tsv with "
                          "positive grades; `uninote prepare` writes both", path=str(corpus.root))
    q, p, neg = [], [], []
    for qid, pid, negs in triples:
        if qid not in corpus or pid not in corpus:
            raise CorpusError(f"pair ({qid}, {pid}) names a note that is not in the corpus",
                              path=str(corpus.root / "pairs.jsonl"))
        q.append(index(qid))
        p.append(index(pid))
        rows = [index(n) for n in negs if n in corpus][:hard_negatives]
        neg.append(rows + [-1] * (hard_negatives - len(rows)))
    relevant = [set() for _ in corpus.notes]
    for qid, grades in corpus.qrels.items():
        if qid in corpus:
            relevant[index(qid)] = {index(c) for c, g in grades.items() if g >= mask_grade and c in corpus}
    for a, b in zip(q, p):
        relevant[a].add(b)
        relevant[b].add(a)
    return PairTable(np.array(q), np.array(p), np.array(neg, dtype=np.int64).reshape(len(q), hard_negatives),
                     relevant)


def batch_order(n_pairs: int, batch_size: int, epochs: int, seed: int, rank: int = 0,
                world_size: int = 1) -> list[np.ndarray]:
    """Seeded shuffled pair indices per step; under DDP each rank takes its share of every batch."""
    rng = np.random.default_rng(seed)
    steps = []
    global_batch = batch_size * world_size
    for _ in range(epochs):
        order = rng.permutation(n_pairs)
        for s in range(0, n_pairs - 1, global_batch):
            chunk = order[s:s + global_batch][rank::world_size]
            if len(chunk) >= 2:
                steps.append(chunk)
    return steps


def pair_index(table: PairTable, pairs: np.ndarray) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """Unique note rows the pairs touch and the local q/p/neg/in-batch-mask index tensors."""
    q, p, neg = table.q[pairs], table.p[pairs], table.neg[pairs]
    union = np.unique(np.concatenate([q, p, neg[neg >= 0]]))
    local = {int(r): i for i, r in enumerate(union)}
    lq = torch.tensor([local[int(r)] for r in q])
    lp = torch.tensor([local[int(r)] for r in p])
    lneg = torch.tensor([[local[int(r)] if r >= 0 else -1 for r in row] for row in neg], dtype=torch.long)
    lneg = lneg.reshape(len(pairs), table.neg.shape[1])
    mask = torch.ones(len(pairs), len(pairs), dtype=torch.bool)
    for i, qi in enumerate(q):
        rel = table.relevant[int(qi)]
        for j, pj in enumerate(p):
            if i != j and (int(pj) in rel or pj == qi or pj == p[i]):
                mask[i, j] = False
    return union, {"q": lq, "p": lp, "neg": lneg, "in_batch_mask": mask}


def add_region_index(idx: dict[str, torch.Tensor], image_owner: torch.Tensor, n_notes: int,
                     n_cells: int, max_pairs: int | None = None) -> torch.Tensor:
    """Choose the photos whose regions the loss uses (first photo of q and p of the first
    ``max_pairs`` pairs, all when None) and index them.

    Returns ``region_image`` (photo rows, for ``forward_features``) and fills ``idx['region_q']`` /
    ``idx['region_p']`` (B, R) with rows of the region output (-1 when a note has no photo).
    """
    first = first_rows(image_owner, n_notes)
    used = slice(None) if max_pairs is None else slice(0, max_pairs)
    photos = torch.unique(torch.cat([first[idx["q"][used]], first[idx["p"][used]]]))
    photos = photos[photos >= 0]
    slot = torch.full((len(image_owner) + 1,), -1, dtype=torch.long)
    slot[photos] = torch.arange(len(photos))
    cells = torch.arange(n_cells)
    for key, rows in (("region_q", idx["q"]), ("region_p", idx["p"])):
        s = slot[first[rows]]  # first == -1 indexes the sentinel slot (-1)
        if max_pairs is not None:
            s[max_pairs:] = -1
        idx[key] = torch.where(s[:, None] >= 0, s[:, None] * n_cells + cells, torch.full_like(cells, -1))
    return photos
