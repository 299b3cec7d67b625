"""The words of a note, and a word index of many notes as numpy arrays (the catalogue's search,
``uninote.service.catalogue``; stored with a big corpus's index, ``uninote.data.lazy``)."""

from __future__ import annotations

import re
from array import array

import numpy as np

from uninote.data.note import Note

WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, in any script


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``: ``"Blue T-Shirt"`` -> ``["blue", "t", "shirt"]``."""
    return WORD.findall(str(text).lower())


def note_words(note: Note) -> set[str]:
    fields = [note.note_id, note.title, *note.tags, *(str(v) for v in note.meta.values())]
    return {w for f in fields for w in words(f)}


def word_index(notes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vocabulary, bounds, postings) of ``notes``: the sorted words as one numpy string array, and
    one sorted int32 array of note positions per word, word ``i``'s being
    ``postings[bounds[i]:bounds[i + 1]]``. Numpy arrays only, so it can be stored and memory-mapped
    (a big corpus's index, ``uninote.data.lazy``) and searched without a Python object per word."""
    vocabulary: dict[str, int] = {}
    word_ids, counts = array("i"), array("i")
    for note in notes:
        found = note_words(note)
        counts.append(len(found))
        word_ids.extend(vocabulary.setdefault(w, len(vocabulary)) for w in found)
    owners = np.repeat(np.arange(len(counts), dtype=np.int32), np.frombuffer(counts, np.int32))
    ids = np.frombuffer(word_ids, np.int32)
    names = np.array(list(vocabulary), dtype=str) if vocabulary else np.zeros(0, "U1")
    rank = np.empty(len(names), np.int32)
    order = np.argsort(names, kind="stable")  # code-point order, as Python sorts str
    rank[order] = np.arange(len(names), dtype=np.int32)
    word = rank[ids]
    by = np.lexsort((owners, word))  # by word, then by note: each word's postings sorted
    bounds = np.searchsorted(word[by], np.arange(len(names) + 1)).astype(np.int64)
    return names[order], bounds, owners[by]
