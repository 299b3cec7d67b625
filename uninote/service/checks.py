"""Search settings checked before a search runs, so a bad value is refused with the reason.

``search_settings`` is what ``UniNoteService.neighbours`` calls: the UI only offers valid values,
but programs calling the API can send anything (a dim the model was not trained at, ``k=0``, a
misspelt strategy), and each gets one sentence that names the value and what is accepted.
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

from uninote.embeddings import GRANULARITIES, QUERY_MODALITIES
from uninote.errors import UniNoteError
from uninote.service.config import STRATEGIES

MAX_K = 100  # neighbours one search returns at most


def _whole(name: str, value: Any) -> int:
    """``value`` as an int (numpy ints welcome); ``UniNoteError`` for bools, floats, strings."""
    if isinstance(value, bool):
        raise UniNoteError(f"{name} must be a whole number, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise UniNoteError(f"{name} must be a whole number, got {value!r}") from None


def search_settings(k: Any, dim: Any, dims: Sequence[int], granularity: str, modality: str,
                    strategy: str) -> tuple[int, int]:
    """``(k, dim)`` as ints once every setting is valid; ``dim=None`` means the full dim.

    ``dims`` are the dims the served model is trained at (its Matryoshka prefixes, full dim last).

    >>> search_settings(10, None, [16, 32, 64], "note", "note", "exact")
    (10, 64)
    """
    k = _whole("k", k)
    if not 1 <= k <= MAX_K:
        raise UniNoteError(f"k must be between 1 and {MAX_K}, got {k}")
    dim = dims[-1] if dim is None else _whole("dim", dim)
    if dim not in dims:
        raise UniNoteError(f"dim {dim} is not served: the model works at {', '.join(map(str, dims))}")
    for name, value, allowed in (("granularity", granularity, GRANULARITIES),
                                 ("query modality", modality, QUERY_MODALITIES),
                                 ("strategy", strategy, STRATEGIES)):
        if value not in allowed:
            raise UniNoteError(f"unknown {name} {value!r}: expected one of {', '.join(allowed)}")
    return k, dim
