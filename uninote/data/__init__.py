"""Notes and corpora: the native folder format and adapters for other sources."""

from uninote.data.corpus import Corpus, Pair
from uninote.data.note import Note

__all__ = ["Corpus", "Note", "Pair"]
