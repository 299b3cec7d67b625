"""Retrieval engine: exact and ANN indexes per (model version, granularity, Matryoshka dim).

``Retriever`` is the one entry point (search, add, remove, save, load); ``scoring`` holds the
brute-force reference every index is tested against.
"""

from uninote.index.ann import IndexConfig
from uninote.index.persist import CorruptIndexError
from uninote.index.retriever import Hit, Retriever, UnknownNoteError, matryoshka_dims
from uninote.index.strategies import STRATEGIES

__all__ = ["Hit", "IndexConfig", "Retriever", "STRATEGIES", "CorruptIndexError", "UnknownNoteError",
           "matryoshka_dims"]
