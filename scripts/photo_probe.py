"""How much of the catalogue's grade a model's photo features hold: linear probes, one split scored.

Two logistic regressions on the photo features the model's image head reads (the frozen backbone's
pooled features, plus the colour histogram when the model has one) learn the article type and the
base colour on ``--fit``; on ``--val`` each photo query then ranks the other notes by its expected
gain under the fashion grades (``uninote.data.fashion``: 3 same type and colour, 2 same type, 1
same sub-category), reading each candidate's type and colour from its metadata (what its title
says). The ndcg@10 of that ranking is what a photo vector could reach from these features, to set
beside ``uninote eval``'s image -> note row for the same split.

    python scripts/photo_probe.py --model $M/fit-frozen --fit $P/fashion-fit --val $P/fashion-val
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from uninote.data import load_corpus
from uninote.eval.metrics import gain, ndcg_at_k
from uninote.model import UniNoteModel
from uninote.model.features import corpus_features

FIELDS = ("articleType", "baseColour", "subCategory")


def photo_features(corpus, model) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Note ids, the first photo's features per note (N, F) and the metadata fields (N, 3)."""
    feats = corpus_features(corpus, model, progress=False)
    first = feats.offsets[:-1]
    keep = np.flatnonzero(feats.offsets[1:] > first)  # notes with a photo
    meta = {n.note_id: n.meta for n in corpus.notes}
    ids = [feats.note_ids[i] for i in keep]
    labels = np.array([[str(meta[i].get(f) or "") for f in FIELDS] for i in ids])
    return ids, feats.image[first[keep]].float().numpy(), labels


def probe(model, fit, val, k: int = 10, strength: float = 0.05, standardise: bool = True) -> dict:
    _, x_fit, y_fit = photo_features(fit, model)
    ids, x_val, y_val = photo_features(val, model)
    mean, std = (x_fit.mean(0), x_fit.std(0) + 1e-6) if standardise else (0.0, 1.0)
    z_fit, z_val = (x_fit - mean) / std, (x_val - mean) / std
    kind, colour = (LogisticRegression(C=strength, max_iter=3000).fit(z_fit, y_fit[:, j]) for j in (0, 1))
    p_kind = align(kind, z_val, y_val[:, 0])  # (N, N): P(candidate's type | query photo)
    p_colour = align(colour, z_val, y_val[:, 1])
    same_group = y_val[:, 2][None, :] == np.array([group_of(y_fit, t) for t in kind.classes_])[:, None]
    p_group = kind.predict_proba(z_val) @ same_group  # P(candidate's sub-category | query photo)
    expected = (gain(3) * p_kind * p_colour + gain(2) * p_kind * (1 - p_colour)
                + gain(1) * np.clip(p_group - p_kind, 0, None))
    row = {nid: i for i, nid in enumerate(ids)}
    scores = []
    for q, grades in val.qrels.items():
        if q not in row:
            continue
        s = expected[row[q]].copy()
        s[row[q]] = -np.inf
        ranked = [ids[j] for j in np.argsort(-s)[:k]]
        score = ndcg_at_k(ranked, {n: g for n, g in grades.items() if n != q}, k)
        if score is not None:
            scores.append(score)
    return {"type_accuracy": float((kind.predict(z_val) == y_val[:, 0]).mean()),
            "colour_accuracy": float((colour.predict(z_val) == y_val[:, 1]).mean()),
            "ndcg@10": float(np.mean(scores)), "queries": len(scores), "features": x_fit.shape[1]}


def align(clf, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, N) probability the classifier gives each query of each candidate's label (0 if unseen)."""
    proba = np.concatenate([clf.predict_proba(z), np.zeros((len(z), 1))], 1)
    column = {c: j for j, c in enumerate(clf.classes_)}
    return proba[:, [column.get(label, len(clf.classes_)) for label in labels]]


def group_of(labels: np.ndarray, kind: str) -> str:
    """The sub-category of an article type in the fitting split (its first note's)."""
    return labels[np.flatnonzero(labels[:, 0] == kind)[0], 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint whose photo features are probed")
    parser.add_argument("--fit", required=True, help="prepared corpus the probes learn on")
    parser.add_argument("--val", required=True, help="prepared corpus with qrels.tsv they are scored on")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for feature extraction")
    parser.add_argument("--raw", action="store_true", help="fit the probes on the features as they are, "
                        "not standardised per dimension")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = UniNoteModel.from_pretrained(args.model).eval()
    r = probe(model, load_corpus(args.fit), load_corpus(args.val), standardise=not args.raw)
    print(f"| features | type accuracy | colour accuracy | probe image -> note ndcg@10 ({r['queries']} queries) |")
    print("|---|---|---|---|")
    print(f"| {r['features']} | {r['type_accuracy']:.3f} | {r['colour_accuracy']:.3f} | {r['ndcg@10']:.4f} |")


if __name__ == "__main__":
    main()
