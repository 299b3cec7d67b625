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

import bisect
import re
from array import array
from dataclasses import dataclass
from functools import reduce

import numpy as np

from uninote.data.note import Note

WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, in any script


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``: ``"Blue T-Shirt"`` -> ``["blue", "t", "shirt"]``."""
    return WORD.findall(str(text).lower())


def note_words(note: Note) -> set[str]:
    fields = [note.note_id, note.title, *note.tags, *(str(v) for v in note.meta.values())]
    return {w for f in fields for w in words(f)}


@dataclass(frozen=True)
class CatalogueMatches:
    """The first ``limit`` matching notes, how many match in all, and the words searched."""

    notes: list[Note]
    total: int
    words: tuple[str, ...]


class Catalogue:
    """A word index of one corpus's notes (built at the first search with words; searched on
    every keystroke).

    Postings are one sorted int32 array of note positions per word (a slice of one array), so a
    million notes of about 20 words cost about 80 MB, and a search is a few numpy set operations
    on the matching words' postings, never a pass over the notes."""

    def __init__(self, notes: list[Note]):
        self.notes = list(notes)
        self._span: dict[str, tuple[int, int]] | None = None  # built by the first search with words

    def _build(self) -> None:
        vocabulary: dict[str, int] = {}
        word_ids, counts = array("i"), array("i")
        for note in self.notes:
            found = note_words(note)
            counts.append(len(found))
            word_ids.extend(vocabulary.setdefault(w, len(vocabulary)) for w in found)
        owners = np.repeat(np.arange(len(self.notes), dtype=np.int32), np.frombuffer(counts, np.int32))
        ids = np.frombuffer(word_ids, np.int32)
        order = np.lexsort((owners, ids))  # by word, then by note: each word's postings sorted
        self._postings = owners[order]
        bounds = np.searchsorted(ids[order], np.arange(len(vocabulary) + 1))
        self._vocabulary = sorted(vocabulary)
        self._span = {w: (int(bounds[i]), int(bounds[i + 1])) for w, i in vocabulary.items()}

    def _with(self, word: str) -> np.ndarray:
        """Notes with ``word`` as one of their words (sorted positions)."""
        lo, hi = self._span.get(word, (0, 0))
        return self._postings[lo:hi]

    def _starting_with(self, prefix: str) -> np.ndarray:
        """Notes with a word that starts with ``prefix`` (sorted positions)."""
        i = bisect.bisect_left(self._vocabulary, prefix)
        j = bisect.bisect_left(self._vocabulary, prefix + "\U0010ffff")
        return np.unique(np.concatenate([self._with(w) for w in self._vocabulary[i:j]] or [np.zeros(0, np.int32)]))

    def find(self, text: str, limit: int = 48) -> CatalogueMatches:
        """Notes matching every word of ``text``, whole-word matches first; all notes for no words."""
        typed = tuple(dict.fromkeys(words(text)))
        if not typed:
            return CatalogueMatches(self.notes[:limit], len(self.notes), typed)
        if self._span is None:
            self._build()
        whole = reduce(np.intersect1d, (self._with(w) for w in typed))
        prefix = np.setdiff1d(reduce(np.intersect1d, (self._starting_with(w) for w in typed)), whole)
        ranked = np.concatenate([whole, prefix])[:limit]
        return CatalogueMatches([self.notes[i] for i in ranked], len(whole) + len(prefix), typed)
