"""2-D layouts of a corpus for the Map tab: one vector per note, UMAP, safetensors cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def per_note_vectors(embeddings, granularity: str) -> np.ndarray:
    """One vector per note: as stored for note/text, the normalised mean of its photos/regions else."""
    vectors, owner = embeddings.vectors(granularity)
    if owner is None:
        return np.asarray(vectors, dtype=np.float32)
    n = len(embeddings)
    sums = np.zeros((n, vectors.shape[1]), dtype=np.float32)
    np.add.at(sums, owner, vectors)
    empty = np.bincount(owner, minlength=n) == 0
    sums[empty] = embeddings.note[empty]  # a note without photos falls back to its fused vector
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
