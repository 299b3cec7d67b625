"""Subsets and train/test splits of a corpus, with qrels and pairs kept consistent.

``split_corpus`` assigns notes to train or test with a seeded permutation (disjoint, deterministic).
Relevance is then restricted to each side: qrels keep only queries and candidates of that side,
pairs only those whose every note is on that side. Catalogue corpora whose labels come from a
rule (the fashion adapter) instead re-derive qrels and pairs within each side, so a test split
has a full set of test queries whose candidates are all test notes.
"""

from __future__ import annotations

import numpy as np

from uninote.data.corpus import Corpus
from uninote.data.fashion import SOURCE_TAG, derive_relevance
from uninote.errors import ConfigError


def subset_corpus(corpus: Corpus, note_ids, name: str | None = None) -> Corpus:
    """The notes named by ``note_ids`` (in corpus order), with qrels and pairs restricted to them."""
    keep = set(note_ids)
    notes = [n for n in corpus.notes if n.note_id in keep]
    qrels = {q: {n: g for n, g in row.items() if n in keep} for q, row in corpus.qrels.items() if q in keep}
    qrels = {q: row for q, row in qrels.items() if row}
    pairs = [p for p in corpus.pairs
             if p.query_id in keep and p.positive_id in keep and all(n in keep for n in p.negative_ids)]
    return Corpus(corpus.root, notes, qrels, pairs, name or corpus.name)


def _is_rule_labelled(corpus: Corpus) -> bool:
    return bool(corpus.notes) and all(n.meta.get("source") == SOURCE_TAG for n in corpus.notes)


def split_corpus(corpus: Corpus, test_fraction: float = 0.3, seed: int = 0,
                 max_queries: int = 500) -> tuple[Corpus, Corpus]:
    """Split into ``(train, test)`` corpora with disjoint notes; same inputs give the same split.

    ``max_queries`` is used only for rule-labelled (fashion) corpora, whose qrels and pairs are
    re-derived inside each side with ``seed``; other corpora have theirs restricted.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(corpus.notes))
    n_test = int(round(len(order) * test_fraction))
    test_ids = {corpus.notes[i].note_id for i in order[:n_test]}
    train_ids = {n.note_id for n in corpus.notes} - test_ids
    train = subset_corpus(corpus, train_ids, f"{corpus.name}-train")
    test = subset_corpus(corpus, test_ids, f"{corpus.name}-test")
    if _is_rule_labelled(corpus):
        for side in (train, test):
            side.qrels, side.pairs = derive_relevance(side.notes, max_queries=max_queries, seed=seed)
    return train, test
