"""Shared set-up of the RL diagnostic scripts (rl_oracle_ceiling.py, rl_grade_depth.py).

``Setup.load`` reads the SFT checkpoint, the rule-labelled training corpus and the held-out corpus
with their cached backbone features; ``Setup.scores`` is note->note and image-only ndcg@10 on the
held-out corpus at every dim, the numbers each diagnostic compares before and after RL.
"""

from __future__ import annotations

from dataclasses import dataclass

DIMS = [64, 128, 256, 512, 768]


@dataclass
class Setup:
    train: object  # Corpus the grades and queries come from
    held: object  # Corpus with qrels to score on
    sft: object  # UniNoteModel RL starts from
    f_train: object  # CorpusFeatures of train
    f_held: object  # CorpusFeatures of held

    @classmethod
    def load(cls, sft: str, train: str, held: str) -> Setup:
        from uninote.data import load_corpus
        from uninote.model.uninote import UniNoteModel
        from uninote.model.features import corpus_features

        train_corpus, held_corpus = load_corpus(train), load_corpus(held)
        model = UniNoteModel.from_pretrained(sft)
        return cls(train_corpus, held_corpus, model, corpus_features(train_corpus, model, progress=False),
                   corpus_features(held_corpus, model, progress=False))

    def scores(self, model) -> dict[str, float]:
        """``{"note@64": ndcg@10, ..., "image@768": ...}`` of ``model`` on the held-out corpus."""
        from uninote.eval import evaluate
        from uninote.model.features import embed_from_features

        emb = embed_from_features(model, self.f_held, progress=False)
        report = evaluate(emb, self.held.qrels, dims=DIMS, modalities=("note", "image"), granularities=("note",))
        return {f"{r['query_modality']}@{r['dim']}": r["ndcg@10"] for r in report.results}
