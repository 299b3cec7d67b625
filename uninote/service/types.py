"""Plain values the service hands to the app: served version, neighbours, results, uploads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServedVersion:
    """One model version with everything a search needs. Never mutated; swapped whole."""

    version: str
    path: Path
    model: Any
    embeddings: Any
    retriever: Any


@dataclass(frozen=True)
class Neighbour:
    note_id: str
    rank: int
    score: float
    title: str
    thumbnail: str | None


@dataclass(frozen=True)
class SearchResult:
    neighbours: list[Neighbour]
    latency_ms: float
    version: str
    settings: dict
    indexes: tuple[str, ...] = ()  # the granularities actually read (``Retriever.indexes_for``)


@dataclass(frozen=True)
class Comparison:
    """One query searched twice, each side with its own settings and model version."""

    left: SearchResult
    right: SearchResult

    @property
    def overlap(self) -> float:
        return overlap_at_k(self.left.neighbours, self.right.neighbours)


@dataclass(eq=False)  # identity hash: UI state stores it and hashes it to detect changes
class UploadedQuery:
    """An uploaded note: validated photos stored under uploads/, and its query embedding."""

    upload_id: str
    photos: list[str]
    title: str
    body: str
    embedding: Any
    version: str = ""  # the model version that made ``embedding``


def overlap_at_k(a: list[Neighbour], b: list[Neighbour]) -> float:
    """|top-k(a) ∩ top-k(b)| / k for two result lists of equal length k."""
    k = max(len(a), len(b))
    return 0.0 if k == 0 else len({n.note_id for n in a} & {n.note_id for n in b}) / k

