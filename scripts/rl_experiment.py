"""The RL experiment of docs/results/rl.md: simulated grades on fashion-train, evaluation on fashion-test.

    .venv/bin/python scripts/rl_experiment.py --sft /root/.cache/uninote/models/sft-fashion \
        --train /root/.cache/uninote/prepared/fashion-train --test /root/.cache/uninote/prepared/fashion-test \
        --work /root/.cache/uninote/rl-exp

For each grader error rate it fills one SQLite store with `uninote simulate-annotators` (2,000
pairs from the SFT model's neighbours), then runs `uninote train-rl --init SFT --db URL
--max-pairs N` for the budgets (at 0% error) and for every error rate (at the largest budget),
and evaluates the SFT model and every RL model on fashion-test with the evaluation harness
(uninote.eval.evaluate, the code behind `uninote eval`): note->note, image-only and text-only
queries against the note index at every dim, plus an out-of-training-data slice (test queries whose
subCategory no graded training query has). Commands are printed as they run; results go to
<work>/results.json and a markdown summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import time
from pathlib import Path

import numpy as np

from uninote import MATRYOSHKA_DIMS

UNINOTE = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "uninote")


def sh(cmd: list[str]) -> float:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def evaluate_model(path: str, test, dims) -> tuple[dict, dict]:
    """ndcg@10 per query modality and dim, and note->note ndcg@10 per query at each dim."""
    from uninote.eval import evaluate
    from uninote.model.uninote import UniNoteModel

    model = UniNoteModel.from_pretrained(path)
    emb = model.embed_corpus(test, progress=False)
    report = evaluate(emb, test.qrels, dims=dims, modalities=("note", "image", "text"), granularities=("note",),
                      keep_per_query=True)
    out = {f"{r['query_modality']}@{r['dim']}": r["ndcg@10"] for r in report.results}
    return out, {d: report.per_query[("note", "note", d)] for d in dims}


def slice_mean(per_query: dict, test, subcategories: set[str]) -> tuple[float, int]:
    """Mean note->note ndcg@10 over the test queries whose subCategory is in ``subcategories``."""
    vals = [v for q, v in per_query.items() if test.get(q).meta.get("subCategory") in subcategories]
    return (float(np.mean(vals)) if vals else float("nan")), len(vals)


def validate(args) -> None:
    """Tune on a held-out quarter of the training corpus, or on ``--part``/``--held`` folders.

    With ``--part A --held V`` (``A`` + ``V`` = a split of the training corpus, ``--sft`` trained on
    ``A`` only) the held-out notes are unseen by SFT and RL alike: the fair validation split. With
    ``--test`` every model is also scored there (a cross-check, not for choosing settings). A config
    may hold ``"propagate": "sym"|"top"|"both"`` (see ``propagate_grades``) besides RLConfig fields.
    """
    from annotations.store import AnnotationStore
    from uninote.data import load_corpus
    from uninote.data.split import split_corpus
    from uninote.eval import evaluate
    from uninote.model.uninote import UniNoteModel
    from uninote.simulate import SimulationConfig, simulate
    from uninote.model.features import corpus_features, embed_from_features, subset_features
    from uninote.train.rl import RLTrainer
    from uninote.train.rl_config import RLConfig
    from uninote.train.rl_data import from_store, propagate_grades
    from uninote.train.rl_pipeline import prepare_pooling

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    dims = list(MATRYOSHKA_DIMS)

    def scores(model, corpus, feats, uncovered=frozenset()):
        emb = embed_from_features(model, feats, progress=False)
        rep = evaluate(emb, corpus.qrels, dims=dims, modalities=("note", "image", "text"), granularities=("note",),
                       keep_per_query=True)
        out = {f"{r['query_modality']}@{r['dim']}": r["ndcg@10"] for r in rep.results}
        for d in (64, 768):  # the out-of-training-data slice: subCategories no graded query has
            out[f"ood@{d}"], out["ood_queries"] = slice_mean(rep.per_query[("note", "note", d)], corpus, uncovered)
        return out

    def rl_model(config: RLConfig):
        model = UniNoteModel.from_pretrained(args.sft)
        prepare_pooling(model, config)
        return model

    sft = UniNoteModel.from_pretrained(args.sft)
    extractor = rl_model(RLConfig())  # features with token states too (mean-pooling models ignore them)
    if args.part and args.held:
        part, held = load_corpus(args.part), load_corpus(args.held)
        f_part, f_held = corpus_features(part, extractor, progress=False), corpus_features(held, extractor, progress=False)
    else:
        train = load_corpus(args.train)
        feats = corpus_features(train, extractor, progress=False)
        part, held = split_corpus(train, test_fraction=0.25, seed=1)
        f_part = subset_features(feats, [n.note_id for n in part.notes])
        f_held = subset_features(feats, [n.note_id for n in held.notes])
    test = load_corpus(args.test) if args.test else None
    f_test = corpus_features(test, extractor, progress=False) if test else None
    test_base = scores(sft, test, f_test) if test else None
    for rate in args.error_rates:
        db = Path(args.grades) if args.grades else work / f"val-grades-e{int(rate * 100)}.db"
        if not db.exists():
            planner, per_round = sft, max(args.budgets) // args.rounds
            for r in range(args.rounds):  # round r grades new queries planned from the RL model of rounds < r
                if r:
                    planner = rl_model(RLConfig())
                    so_far = from_store(f"sqlite:///{db}")
                    RLTrainer(planner, f_part, so_far, RLConfig(save_every=0),
                              work / "val-runs" / f"round{r}").train(so_far.fingerprint())
                pairs = per_round if r < args.rounds - 1 else max(args.budgets) - per_round * r
                with AnnotationStore(f"sqlite:///{db}") as store:
                    simulate(store, part, embed_from_features(planner, f_part, progress=False),
                             SimulationConfig(pairs=pairs, error_rate=rate, annotators=args.annotators, seed=r,
                                              **json.loads(args.sim)),
                             planner.version)
        for budget in args.budgets:
            collected = from_store(f"sqlite:///{db}").head(budget)
            if args.hold_out:  # a category the grades never touch: its held-out queries are the OOD slice
                field, values = args.hold_out.split("=", 1)
                collected = collected.restrict(n.note_id for n in part.notes
                                               if str(n.meta.get(field)) not in values.split(","))
            covered = {part.get(q).meta.get("subCategory") for q in collected.grades}
            uncovered = {n.meta.get("subCategory") for n in held.notes} - covered
            base = scores(sft, held, f_held, uncovered)
            for text in args.configs:
                over = json.loads(text)
                mode = over.pop("propagate", None)
                graded = propagate_grades(collected, mode) if mode else collected
                config = RLConfig(**{"save_every": 0, **over})
                model = rl_model(config)
                t0 = time.perf_counter()
                RLTrainer(model, f_part, graded, config, work / "val-runs" / "tmp").train(graded.fingerprint())
                ev = scores(model, held, f_held, uncovered)
                row = {"config": dict(over, **({"propagate": mode} if mode else {})), "error_rate": rate,
                       "budget": budget, "seconds": round(time.perf_counter() - t0, 1),
                       "delta": {k: round(ev[k] - base[k], 4) for k in ev if k != "ood_queries"},
                       "ood_queries": ev["ood_queries"], "sft": base}
                if test:
                    ev_test = scores(model, test, f_test)
                    row["test_delta"] = {k: round(ev_test[k] - test_base[k], 4) for k in ev_test}
                print(json.dumps({k: row[k] for k in ("config", "error_rate", "budget", "seconds")}
                                 | {k: row["delta"][k] for k in ("note@64", "note@768", "image@768", "text@768",
                                                               "ood@64", "ood@768")}
                                 | {"ood_queries": row["ood_queries"]}
                                 | {f"test_{k}": v for k, v in row.get("test_delta", {}).items()
                                    if k in ("note@64", "note@768")}),
                      flush=True)
                with open(work / "validate.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", help="held-out test corpus (required unless --validate)")
    ap.add_argument("--validate", action="store_true", help="tune on a split of --train instead (see above)")
    ap.add_argument("--configs", nargs="+", default=["{}"], help="--validate: RLConfig overrides as JSON")
    ap.add_argument("--part", help="--validate: corpus folder the grades and --sft come from (with --held)")
    ap.add_argument("--held", help="--validate: held-out corpus folder to score on (with --part)")
    ap.add_argument("--grades", help="--validate: an existing grade store (SQLite file) to reuse")
    ap.add_argument("--work", required=True)
    ap.add_argument("--budgets", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--error-rates", type=float, nargs="+", default=[0.0, 0.1, 0.25])
    ap.add_argument("--annotators", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="--validate: collect the grades in this many rounds, "
                    "each planned from the RL model trained on the rounds before (the app's queue refills)")
    ap.add_argument("--sim", default="{}", help="--validate: SimulationConfig overrides as JSON, e.g. "
                    "'{\"query_selection\": \"coverage\"}'")
    ap.add_argument("--hold-out", help="--validate: FIELD=V1[,V2] drops every grade that touches a note with "
                    "that metadata value, e.g. masterCategory=Footwear: a large out-of-training-data slice")
    ap.add_argument("--rl-args", default="", help="extra train-rl flags, e.g. '--steps 200'")
    args = ap.parse_args()
    if args.validate:
        if bool(args.part) != bool(args.held):
            ap.error("--part and --held go together")
        return validate(args)
    if not args.test:
        ap.error("--test is required (or use --validate)")

    from uninote.data import load_corpus

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    runs = [(b, 0.0) for b in args.budgets] + [(max(args.budgets), r) for r in args.error_rates if r != 0.0]
    for rate in sorted({r for _, r in runs}):
        db = work / f"grades-e{int(rate * 100)}.db"
        if not db.exists():
            sh([UNINOTE, "simulate-annotators", "--db", f"sqlite:///{db}", "--corpus", args.train, "--model",
                args.sft, "--pairs", str(max(args.budgets)), "--error-rate", str(rate), "--annotators",
                str(args.annotators), "--quiet"])
    timings = results.setdefault("train_seconds", {})
    for budget, rate in runs:
        out = work / f"rl-b{budget}-e{int(rate * 100)}"
        if not (out / "metrics.json").exists():
            db = work / f"grades-e{int(rate * 100)}.db"
            timings[out.name] = sh([UNINOTE, "train-rl", "--init", args.sft, "--db", f"sqlite:///{db}", "--out",
                                    str(out), "--max-pairs", str(budget), "--quiet", *shlex.split(args.rl_args)])
            results_path.write_text(json.dumps(results, indent=2))
    train, test = load_corpus(args.train), load_corpus(args.test)
    from uninote.train.rl_data import from_store

    def uncovered_by(graded) -> set[str]:
        covered = {train.get(q).meta.get("subCategory") for q in graded.grades}
        return {n.meta.get("subCategory") for n in test.notes} - covered

    # two out-of-training-data slices: test queries of subCategories that no query of the full 0 %-error
    # store has (the same queries for every run), and of subCategories that no query of *this run's*
    # grades has (larger at small budgets: everything that run's RL was not shown); both vs SFT
    uncovered = uncovered_by(from_store(f"sqlite:///{work / 'grades-e0.db'}"))
    dims = list(MATRYOSHKA_DIMS)
    evals = results.setdefault("eval", {})
    evals["sft"], sft_per_query = evaluate_model(args.sft, test, dims)
    for b, r in runs:
        name = f"rl-b{b}-e{int(r * 100)}"
        ev, per_query = evaluate_model(str(work / name), test, dims)
        own = uncovered_by(from_store(f"sqlite:///{work / f'grades-e{int(r * 100)}.db'}").head(b))
        for d in dims:
            for key, subcats in (("ood", uncovered), ("own_ood", own)):
                ev[f"{key}_note@{d}"], ev[f"{key}_queries"] = slice_mean(per_query[d], test, subcats)
                ev[f"{key}_sft_note@{d}"] = slice_mean(sft_per_query[d], test, subcats)[0]
        evals[name] = ev
        results_path.write_text(json.dumps(results, indent=2))
    results["uncovered_subcategories"] = sorted(x for x in uncovered if x)
    results_path.write_text(json.dumps(results, indent=2))
    base = evals["sft"]
    print("\n| model | " + " | ".join(f"note d={d}" for d in dims)
          + " | image d=768 | text d=768 | OOD d=64 / d=768 (queries) | own OOD d=64 / d=768 (queries) |")
    print("|---|" + "---|" * (len(dims) + 4))
    for name, ev in evals.items():
        cells = [f"{ev[f'note@{d}']:.4f}" + ("" if name == "sft" else f" ({ev[f'note@{d}'] - base[f'note@{d}']:+.4f})")
                 for d in dims]
        for key in ("image@768", "text@768"):
            cells.append(f"{ev[key]:.4f}" + ("" if name == "sft" else f" ({ev[key] - base[key]:+.4f})"))
        for key in ("ood", "own_ood"):
            if name == "sft":
                cells.append("–")
                continue
            deltas = [ev[f"{key}_note@{d}"] - ev[f"{key}_sft_note@{d}"] for d in (64, 768)]
            cells.append(" / ".join(f"{x:+.4f}" for x in deltas) + f" ({ev[f'{key}_queries']})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
