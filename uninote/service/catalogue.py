"""Catalogue search by words: what the Explore search box and ``UniNoteService.find_notes`` use.

A note's words are the letter-and-digit runs of its id, title, tags and metadata values, lower
cased. A note matches typed text when every typed word is one of its words (a *whole-word*
match) or, failing that, the start of one of them (a *prefix* match, so results follow the typing:
"shi" finds "shirt"). Whole-word matches come first, then prefix matches, each in catalogue order.
A word is never matched inside another: "shirt" does not find "sweatshirt".

    catalogue = Catalogue(corpus.notes)
    found = catalogue.find("blue shirt", limit=48)   # CatalogueMatches(notes, total, words)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

from uninote.data.note import Note
from uninote.data.words import note_words, word_index, words  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class CatalogueMatches:
    """The first ``limit`` matching notes, how many match in all, and the words searched."""

    notes: list[Note]
    total: int
    words: tuple[str, ...]


class Catalogue:
    """A word index of one corpus's notes (built at the first search with words, or given as
    ``word_index(notes)`` arrays; searched on every keystroke).

    Postings are one sorted int32 array of note positions per word (a slice of one array), so a
    million notes of about 20 words cost about 80 MB, and a search is a few numpy set operations
    on the matching words' postings, never a pass over the notes. ``notes`` may be any sequence
    (a big corpus's lazily read notes: only the notes shown are read)."""

    def __init__(self, notes, index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
        self.notes = list(notes) if isinstance(notes, (list, tuple)) else notes
        self._index = index  # built by the first search with words when not given

    def _with(self, word: str) -> np.ndarray:
        """Notes with ``word`` as one of their words (sorted positions)."""
        vocabulary, bounds, postings = self._index
        i = int(np.searchsorted(vocabulary, word))
        if i < len(vocabulary) and vocabulary[i] == word:
            return postings[bounds[i]:bounds[i + 1]]
        return postings[:0]

    def _starting_with(self, prefix: str) -> np.ndarray:
        """Notes with a word that starts with ``prefix`` (sorted positions)."""
        vocabulary, bounds, postings = self._index
        i, j = (int(x) for x in np.searchsorted(vocabulary, [prefix, prefix + "\U0010ffff"]))
        return np.unique(np.asarray(postings[bounds[i]:bounds[j]]))

    def find(self, text: str, limit: int = 48) -> CatalogueMatches:
        """Notes matching every word of ``text``, whole-word matches first; all notes for no words."""
        typed = tuple(dict.fromkeys(words(text)))
        if not typed:
            return CatalogueMatches(list(self.notes[:limit]), len(self.notes), typed)
        if self._index is None:
            self._index = word_index(self.notes)
        whole = reduce(np.intersect1d, (self._with(w) for w in typed))
        prefix = np.setdiff1d(reduce(np.intersect1d, (self._starting_with(w) for w in typed)), whole)
        ranked = np.concatenate([whole, prefix])[:limit]
        return CatalogueMatches([self.notes[int(i)] for i in ranked], len(whole) + len(prefix), typed)
