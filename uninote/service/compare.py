"""Side by side: one query searched twice, each side with its own settings and model version.

``UniNoteService.compare`` runs both searches (``Comparison.overlap`` is overlap@k) and
``UniNoteService.queue_comparison`` sends the union of the two top-k lists to the label queue, so
annotators grade what one version (or setting) finds and the other does not. A version other than
the served one is loaded beside it and held by ``SecondVersion``: one at a time, so the service
holds at most two versions (the served one and one compared one).
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence

from annotations.planning import Setting, plan_tasks
from uninote.data.note import Note
from uninote.service.types import Comparison, SearchResult, ServedVersion, UploadedQuery


class SecondVersion:
    """At most one model version loaded beside the served one; asking for another drops it first."""

    def __init__(self, load: Callable[[str], ServedVersion]):
        self._load = load
        self._held: ServedVersion | None = None
        self._lock = threading.Lock()

    @property
    def version(self) -> str | None:
        held = self._held
        return None if held is None else held.version

    def get(self, version: str) -> ServedVersion:
        with self._lock:
            if self._held is None or self._held.version != version:
                self._held = None  # released before the next one loads: never three in memory
                self._held = self._load(version)
            return self._held

    def take(self, version: str) -> ServedVersion | None:
        """Hand over the held version if it is ``version`` (it is about to be served), else None."""
        with self._lock:
            held, self._held = (self._held, None) if self.version == version else (None, self._held)
            return held


def comparison_lists(query_id: str, results: Sequence[SearchResult]) -> dict[str, dict[str, list[str]]]:
    """``plan_tasks`` input: each result's ranked ids under its setting key, version included."""
    lists: dict[str, dict[str, list[str]]] = {}
    for r in results:
        s = r.settings
        key = Setting(s["dim"], s["granularity"], s["strategy"], r.version).key
        lists[key] = {query_id: [n.note_id for n in r.neighbours]}
    return lists


def queue_union(queue, query_id: str, both: Comparison, model_version: str) -> dict[str, int]:
    """Plan the union of both top-k lists (no random draws, no cap) and add it to ``queue``; each
    task keeps the version whose list ranks it best. ``{"pairs", "added", "existing"}``."""
    from dataclasses import replace

    k = max(len(both.left.neighbours), len(both.right.neighbours), 1)
    config = replace(queue.config, k=k, random_per_query=0, max_tasks_per_query=None)
    planned = plan_tasks(comparison_lists(query_id, [both.left, both.right]), config)
    report = queue.add_tasks(planned, model_version=model_version)
    return {"pairs": len(planned), "added": sum(r["added"] for r in report.values()),
            "existing": sum(r["existing"] for r in report.values())}


def upload_vectors(searched: ServedVersion, upload: UploadedQuery):
    """The upload's query vectors from the searched version's model: made again when another
    version encoded it, so vectors of two models never meet."""
    if upload.version in ("", searched.version):
        return upload.embedding
    note = Note(note_id=upload.upload_id, title=upload.title, body=upload.body, images=upload.photos)
    return searched.model.encode_query(note, None)


def served_dims(served: ServedVersion) -> list[int]:
    """Dims a version's model is trained to work at (its Matryoshka prefixes, full dim last)."""
    dims = list(getattr(getattr(served.model, "config", None), "matryoshka_dims", []) or [])
    full = served.embeddings.dim
    return sorted({d for d in dims if d <= full} | {full})
