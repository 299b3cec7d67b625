"""Ceiling diagnostic for the RL stage: the same trainer with a PERFECT reward model.

On a rule-labelled catalogue (the fashion grading rule, ``uninote.data.fashion.fashion_grade``) the
reward model can be replaced by the rule itself, so every pool candidate and every training note
used as a query gets its true grade. The gain this run buys over SFT is what the RL stage could
reach if the learned reward model were perfect; the gap to a normal run is the reward model's share
of what is missing. Not a product path: real annotations have no rule to consult.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/rl_oracle_ceiling.py --sft ~/.cache/uninote/models/sft-fashion \\
        --train ~/.cache/uninote/prepared/fashion-train --eval ~/.cache/uninote/prepared/fashion-test \\
        --db /tmp/rlx/v7/grades-e0.db --out /tmp/oracle-rl [--config '{"steps": 1000}']

Prints one JSON line: the RL config and the ndcg@10 change over SFT per query modality and dim.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from rl_diagnostics import Setup


class RuleRewardModel:
    """Stands in for ``RewardModel`` in ``RLTrainer``: the expected grade is the catalogue rule's grade."""

    def __init__(self, metas: list[dict]):
        self.metas = metas

    def expected_grade(self, reps, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        from uninote.data.fashion import fashion_grade

        return torch.tensor([float(fashion_grade(self.metas[i], self.metas[j]))
                             for i, j in zip(a.tolist(), b.tolist())])

    def cpu(self):
        return self

    def save(self, *args, **kwargs) -> None:  # nothing to save: the rule is the model
        pass


def main() -> None:
    from uninote.model.uninote import UniNoteModel
    from uninote.train.rl import RLTrainer
    from uninote.train.rl_config import RLConfig
    from uninote.train.rl_data import from_store

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", required=True, help="SFT checkpoint RL starts from")
    ap.add_argument("--train", required=True, help="rule-labelled corpus the grades and queries come from")
    ap.add_argument("--eval", required=True, help="held-out corpus with qrels to score on")
    ap.add_argument("--db", required=True, help="grade store (SQLite file) of the normal run, for its human grades")
    ap.add_argument("--out", required=True, help="work folder for the RL checkpoint")
    ap.add_argument("--config", default="{}", help="RLConfig overrides as JSON")
    args = ap.parse_args()

    setup = Setup.load(args.sft, args.train, args.eval)
    train, sft, f_train, scores = setup.train, setup.sft, setup.f_train, setup.scores

    base = scores(sft)
    graded = from_store(f"sqlite:///{args.db}")
    over = json.loads(args.config)
    model = UniNoteModel.from_pretrained(args.sft)
    trainer = RLTrainer(model, f_train, graded, RLConfig(**{"save_every": 0, "ungraded": "reward_model", **over}),
                        args.out)
    trainer.reward_model = RuleRewardModel([train.get(n).meta for n in f_train.note_ids])
    t0 = time.perf_counter()
    trainer.train(graded.fingerprint())
    after = scores(model)
    print(json.dumps({"config": over, "seconds": round(time.perf_counter() - t0),
                      **{k: round(after[k] - base[k], 4) for k in after}}), flush=True)


if __name__ == "__main__":
    main()
