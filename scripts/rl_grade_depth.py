"""Where should 2,000 grades go? RL from rule-graded pairs drawn at chosen SFT ranks, scored on test.

A diagnostic for the label queue's design, on a rule-labelled catalogue (the fashion grading rule,
``uninote.data.fashion.fashion_grade``, plays the annotators): pick ``--queries`` random training
notes, grade ``--per-query`` candidates drawn uniformly from SFT's ranks ``--ranks LO:HI`` (0-based,
full dim), run ``RLTrainer`` with the default config from those grades, and print the ndcg@10
change over SFT on the held-out corpus. Compare rank ranges at a fixed budget:

    OMP_NUM_THREADS=1 .venv/bin/python scripts/rl_grade_depth.py --sft ~/.cache/uninote/models/sft-fashion \\
        --train ~/.cache/uninote/prepared/fashion-train --eval ~/.cache/uninote/prepared/fashion-test \\
        --ranks 5:30 --queries 200 --per-query 10 --seed 0 --out /tmp/depth-5-30

Prints one JSON line. Not a product path: real grades come through the label queue.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from rl_diagnostics import Setup


def main() -> None:
    from uninote.data.fashion import fashion_grade
    from uninote.model.uninote import UniNoteModel
    from uninote.train.rl import RLTrainer, embed_notes
    from uninote.train.rl_config import RLConfig
    from uninote.train.rl_data import GradedPairs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", required=True, help="SFT checkpoint RL starts from")
    ap.add_argument("--train", required=True, help="rule-labelled corpus the queries and grades come from")
    ap.add_argument("--eval", required=True, help="held-out corpus with qrels to score on")
    ap.add_argument("--ranks", default="0:15", help="LO:HI, the SFT rank range candidates are drawn from")
    ap.add_argument("--queries", type=int, default=200, help="graded queries")
    ap.add_argument("--per-query", type=int, default=10, help="graded candidates per query")
    ap.add_argument("--seed", type=int, default=0, help="seed for the queries and candidates drawn")
    ap.add_argument("--out", required=True, help="work folder for the RL checkpoint")
    ap.add_argument("--config", default="{}", help="RLConfig overrides as JSON")
    args = ap.parse_args()
    lo, hi = map(int, args.ranks.split(":"))

    setup = Setup.load(args.sft, args.train, args.eval)
    train, sft, f_train, scores = setup.train, setup.sft, setup.f_train, setup.scores

    rng = np.random.default_rng(args.seed)
    note = embed_notes(sft, f_train).note
    queries = rng.choice(len(f_train), args.queries, replace=False)
    sims = note[queries] @ note.T
    sims[torch.arange(len(queries)), torch.from_numpy(queries)] = -float("inf")
    ranked = sims.topk(hi, dim=1).indices.numpy()[:, lo:]
    ids, grades = f_train.note_ids, {}
    for q, row in zip(queries, ranked):
        meta = train.get(ids[q]).meta
        picked = row[rng.choice(len(row), args.per_query, replace=False)]
        grades[ids[q]] = {ids[c]: float(fashion_grade(meta, train.get(ids[c]).meta)) for c in picked}
    graded = GradedPairs(grades, args.queries * args.per_query, train.name, f"ranks {lo}:{hi}")

    base = scores(sft)
    model = UniNoteModel.from_pretrained(args.sft)
    trainer = RLTrainer(model, f_train, graded, RLConfig(**{"save_every": 0, **json.loads(args.config)}), args.out)
    t0 = time.perf_counter()
    trainer.train(graded.fingerprint())
    after = scores(model)
    counts = np.bincount([int(g) for cs in grades.values() for g in cs.values()], minlength=4).tolist()
    print(json.dumps({"ranks": args.ranks, "queries": args.queries, "per_query": args.per_query, "seed": args.seed,
                      "grade_counts": counts, "ungraded": trainer.ungraded, "seconds": round(time.perf_counter() - t0),
                      **{k: round(after[k] - base[k], 4) for k in after}}), flush=True)


if __name__ == "__main__":
    main()
