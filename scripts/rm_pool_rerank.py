"""Does the reward model rank better than the SFT model it is meant to improve? A diagnostic.

RL distils the reward model's grades of ungraded pool candidates into the embedding, so the reward
model only helps where it orders those pools better than SFT already does. This takes 400 training
notes nobody graded, their SFT top-32 neighbours (full dim), grades them by the catalogue rule, and
prints ndcg@10 of (a) SFT's own order, (b) the order of the reward model trained on the store's
grades (as ``RLTrainer`` trains it), (c) reward models trained on N rule-graded SFT top-10 pairs,
to see how many grades this reward model needs before it beats SFT.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/rm_pool_rerank.py --sft ~/.cache/uninote/models/sft-fashion \\
        --train ~/.cache/uninote/prepared/fashion-train --db /tmp/rlx/v7/grades-e0.db
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

POOL, QUERIES = 32, 400


def ndcg_at_10(scores: np.ndarray, grades: np.ndarray) -> float:
    """Mean ndcg@10 of each row's order by ``scores`` under that row's ``grades`` (0 with no relevant)."""
    from uninote.eval.metrics import ndcg_at_k

    return float(np.mean([ndcg_at_k(np.argsort(-s, kind="stable").tolist(), dict(enumerate(g.tolist()))) or 0.0
                          for s, g in zip(scores, grades)]))


def main() -> None:
    from uninote.data import load_corpus
    from uninote.data.fashion import fashion_grade
    from uninote.model.uninote import UniNoteModel
    from uninote.model.features import corpus_features
    from uninote.train.reward_model import NoteReps, RewardModelConfig, train_reward_model
    from uninote.train.rl import embed_notes
    from uninote.train.rl_data import from_store

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", required=True)
    ap.add_argument("--train", required=True, help="rule-labelled corpus the grades refer to")
    ap.add_argument("--db", required=True, help="grade store (SQLite file)")
    ap.add_argument("--oracle-pairs", type=int, nargs="*", default=[2000, 10000, 30000])
    args = ap.parse_args()

    train = load_corpus(args.train)
    sft = UniNoteModel.from_pretrained(args.sft)
    feats = corpus_features(train, sft, progress=False)
    ref = embed_notes(sft, feats)
    reps = NoteReps(ref.note, ref.text, ref.image, ref.has_image)
    metas = [train.get(n).meta for n in feats.note_ids]
    graded = from_store(f"sqlite:///{args.db}").restrict(feats.note_ids)
    triples = [(feats.rows_of([q])[0], feats.rows_of([c])[0], g) for q, cs in graded.grades.items() for c, g in cs.items()]
    q, c, g = map(np.array, zip(*triples))
    n = len(feats)
    rng = np.random.default_rng(1)
    graded_rows = np.unique(q)

    def top(rows: np.ndarray, k: int) -> np.ndarray:
        sims = ref.note[rows] @ ref.note.T
        sims[torch.arange(len(rows)), torch.from_numpy(rows)] = -float("inf")
        return sims.topk(k, dim=1).indices.numpy()

    pool_q = rng.choice(np.setdiff1d(np.arange(n), graded_rows), QUERIES, replace=False)
    pools = top(pool_q, POOL)
    truth = np.array([[fashion_grade(metas[a], metas[b]) for b in row] for a, row in zip(pool_q, pools)], float)
    a, b = torch.from_numpy(np.repeat(pool_q, POOL)), torch.from_numpy(pools.ravel())
    sft_order = -np.tile(np.arange(POOL, dtype=float), (QUERIES, 1))
    base = ndcg_at_10(sft_order, truth)
    print(f"{QUERIES} ungraded queries, SFT top-{POOL} pools; true grade shares "
          f"{np.round(np.bincount(truth.astype(int).ravel(), minlength=4) / truth.size, 3).tolist()}")
    print("| reward model | held-out accuracy (majority) | pool ndcg@10 | vs SFT order |\n|---|---|---|---|")
    print(f"| none: SFT order | | {base:.4f} | |")

    def row(name: str, model, held: dict | None) -> None:
        s = model.expected_grade(reps, a, b).reshape(QUERIES, POOL).numpy() + 1e-4 * sft_order  # ties: SFT order
        r = ndcg_at_10(s, truth)
        acc = f"{held['accuracy']:.3f} ({held['majority_accuracy']:.3f})" if held else ""
        print(f"| {name} | {acc} | {r:.4f} | {r - base:+.4f} |", flush=True)

    for seed in (0, 1):
        _, m = train_reward_model(reps, q, c, g, RewardModelConfig(heldout_fraction=0.2, seed=seed))
        model, _ = train_reward_model(reps, q, c, g, RewardModelConfig(heldout_fraction=0.0, seed=seed))
        row(f"store grades ({len(q)}), seed {seed}", model, m["heldout"])
    others = np.setdiff1d(np.arange(n), pool_q)
    for pairs in args.oracle_pairs:
        rows = rng.choice(others, min(pairs // 10, len(others)), replace=False)
        cands = top(rows, 10)
        qa, cb = np.repeat(rows, 10), cands.ravel()
        ga = np.array([fashion_grade(metas[x], metas[y]) for x, y in zip(qa, cb)], float)
        model, _ = train_reward_model(reps, qa, cb, ga, RewardModelConfig(heldout_fraction=0.0))
        row(f"{len(qa)} rule-graded SFT top-10 pairs", model, None)


if __name__ == "__main__":
    main()
