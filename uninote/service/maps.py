"""2-D layouts of a corpus for the Map tab: one vector per note (a sample of a big version), UMAP,
safetensors cache, and the
service's map methods (``MapMethods``, mixed into ``UniNoteService``)."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from uninote.embeddings import truncate
from uninote.service.pages import release_mapped

log = logging.getLogger("uninote.service")
MAP_MAX_NOTES = 20_000  # a bigger version's map is a seeded random sample of this many notes


def map_rows(n: int, max_notes: int = MAP_MAX_NOTES, seed: int = 0) -> np.ndarray:
    """The note rows a map shows: all of them, or a sorted seeded sample of ``max_notes``."""
    if n <= max_notes:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_notes, replace=False))


def per_note_vectors(embeddings, granularity: str, dim: int | None = None, rows=None) -> np.ndarray:
    """One vector per note (of ``rows``, default all) at ``dim`` (default full): as stored for
    note/text, the normalised mean of its photos/regions else. Reads only those notes' rows."""
    rows = np.arange(len(embeddings)) if rows is None else np.asarray(rows, np.int64)
    dim = dim or embeddings.dim
    cut = (lambda x: np.asarray(x, np.float32)) if dim == embeddings.dim else (lambda x: truncate(x, dim))  # noqa: E731
    vectors, owner = embeddings.vectors(granularity)
    if owner is None:
        return cut(vectors[rows])
    picked = np.flatnonzero(np.isin(owner, rows))
    local = np.searchsorted(rows, owner[picked])
    sums = np.zeros((len(rows), dim), dtype=np.float32)
    np.add.at(sums, local, cut(vectors[picked]).reshape(len(picked), dim))
    empty = np.bincount(local, minlength=len(rows)) == 0
    sums[empty] = cut(embeddings.note[rows[empty]])  # a note without photos falls back to its fused vector
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def umap_2d(vectors: np.ndarray) -> np.ndarray:
    import umap  # umap-learn (numba): over 10 s to import, only a new map layout needs it

    n = len(vectors)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, max(2, n - 1)), metric="cosine",
                        random_state=0, init="spectral" if n > 16 else "random", n_jobs=1)
    return reducer.fit_transform(vectors).astype(np.float32)


def layout_path(version_dir: Path, granularity: str, dim: int) -> Path:
    """The cached layout of one granularity at one dim, inside a model version's folder."""
    return Path(version_dir) / "umap" / f"{granularity}-{dim}.safetensors"


def save_layout(path: Path, note_ids: list[str], layout: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"xy": np.ascontiguousarray(layout)}, str(tmp), metadata={"note_ids": json.dumps(note_ids)})
    os.replace(tmp, path)


def load_layout(path: Path) -> tuple[list[str], np.ndarray]:
    with safe_open(str(path), framework="numpy") as f:
        return json.loads(f.metadata()["note_ids"]), f.get_tensor("xy")


class MapMethods:
    """Map methods of ``UniNoteService``: layouts of the served version, computed in the
    background and cached in its folder (``self.served``, ``self._umap_jobs`` come from it)."""

    def umap(self, dim: int | None = None, granularity: str = "note",
             progress: Callable[[str], None] | None = None):
        """2-D UMAP layout of the served corpus (cached per version, dim and granularity)."""
        served = self.served
        dim = dim or served.embeddings.dim
        cache = layout_path(served.path, granularity, dim)
        if cache.exists():
            return load_layout(cache)
        rows = map_rows(len(served.embeddings))
        if progress:
            progress(f"computing UMAP of {len(rows):,} notes ({granularity}, {dim}-d)")
        vectors = per_note_vectors(served.embeddings, granularity, dim, rows)
        release_mapped(served)  # the sample's rows mapped pages all over the tables
        layout = umap_2d(vectors)
        ids = [served.embeddings.note_ids[i] for i in rows]
        save_layout(cache, ids, layout)
        return ids, layout

    def precompute_umap(self, dim: int | None = None, granularity: str = "note") -> None:
        """Start computing the layout in the background (no-op when already started or cached)."""
        dim = dim or self.served.embeddings.dim
        key = (self.served.version, dim, granularity)
        with self._umap_lock:
            # finished jobs are dropped (their layout is on disk): the table holds running ones only
            self._umap_jobs = {k: j for k, j in self._umap_jobs.items() if j.is_alive()}
            if key in self._umap_jobs or self.umap_cached(dim, granularity):
                return
            job = threading.Thread(target=self._umap_quietly, args=(dim, granularity), daemon=True)
            self._umap_jobs[key] = job
        job.start()

    def _umap_quietly(self, dim, granularity) -> None:
        try:
            self.umap(dim, granularity)
        except Exception:
            log.exception("background UMAP failed")

    def umap_cached(self, dim: int | None, granularity: str) -> bool:
        dim = dim or self.served.embeddings.dim
        return layout_path(self.served.path, granularity, dim).exists()

    def umap_pending(self, dim: int | None, granularity: str) -> bool:
        job = self._umap_jobs.get((self.served.version, dim or self.served.embeddings.dim, granularity))
        return job is not None and job.is_alive()
