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
from dataclasses import dataclass

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
    """A word index of one corpus's notes (built once; searched on every keystroke)."""

    def __init__(self, notes: list[Note]):
        self.notes = list(notes)
        self._postings: dict[str, set[int]] = {}
        for i, note in enumerate(self.notes):
            for w in note_words(note):
                self._postings.setdefault(w, set()).add(i)
        self._vocabulary = sorted(self._postings)

    def _starting_with(self, prefix: str) -> set[int]:
        """Notes with a word that starts with ``prefix``."""
        out: set[int] = set()
        i = bisect.bisect_left(self._vocabulary, prefix)
        while i < len(self._vocabulary) and self._vocabulary[i].startswith(prefix):
            out |= self._postings[self._vocabulary[i]]
            i += 1
        return out

    def find(self, text: str, limit: int = 48) -> CatalogueMatches:
        """Notes matching every word of ``text``, whole-word matches first; all notes for no words."""
        typed = tuple(dict.fromkeys(words(text)))
        if not typed:
            return CatalogueMatches(self.notes[:limit], len(self.notes), typed)
        whole = set.intersection(*(self._postings.get(w, set()) for w in typed))
        prefix = set.intersection(*(self._starting_with(w) for w in typed)) - whole
        ranked = sorted(whole) + sorted(prefix)
        return CatalogueMatches([self.notes[i] for i in ranked[:limit]], len(ranked), typed)
