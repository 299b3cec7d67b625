"""Embeddings of a corpus at every granularity, in one space, and how queries read them.

``NoteEmbeddings`` is what the model writes once per corpus and what indexes, evaluation and the
app read. Every matrix has L2-normalised rows at the full dim (float32 in memory; a version loaded
from disk holds memory maps, float32 or float16 as stored, see ``uninote.embedding_store``);
``truncate(dim)`` takes the Matryoshka prefix and re-normalises (never re-encode per dim).

Granularities:
- ``note``   one fused vector per note            (N, D)
- ``text``   one text vector per note             (N, D)
- ``image``  one vector per photo                 (M, D), ``image_owner[m]`` = note row
- ``region`` local vectors from the image feature map (R, D), ``region_owner[r]`` = note row
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from uninote.embedding_store import DEFAULT_SHARD_NOTES, is_sharded, load_sharded, save_sharded

GRANULARITIES = ("note", "text", "image", "region")
QUERY_MODALITIES = ("note", "image", "text")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, eps)


def truncate(x: np.ndarray, dim: int) -> np.ndarray:
    """The Matryoshka prefix of each row, re-normalised."""
    if dim > x.shape[-1]:
        raise ValueError(f"dim {dim} exceeds the embedding's full dim {x.shape[-1]}")
    return l2_normalize(x[..., :dim])


@dataclass
class QueryEmbedding:
    """Everything a query can be matched with. Any field may be absent (text-only, photo-only)."""

    note: np.ndarray | None = None  # (D,)
    text: np.ndarray | None = None  # (D,)
    images: np.ndarray | None = None  # (k, D) one per photo
    regions: np.ndarray | None = None  # (r, D)
    region_image: np.ndarray | None = None  # (r,) which photo each region comes from

    def truncate(self, dim: int) -> "QueryEmbedding":
        def cut(a):
            return None if a is None else truncate(a, dim)

        return QueryEmbedding(cut(self.note), cut(self.text), cut(self.images), cut(self.regions),
                              self.region_image)

    def vectors(self, modality: str, granularity: str) -> np.ndarray | None:
        """The query vectors (q, D) for a query modality against an index granularity.

        ``note`` queries use the fused vector (and all their regions against ``region``);
        ``image`` queries use the first photo only (what a user uploads) and its regions;
        ``text`` queries use the text vector everywhere. None when the query lacks that part.
        """
        if modality not in QUERY_MODALITIES:
            raise ValueError(f"unknown query modality {modality!r}; expected one of {QUERY_MODALITIES}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}; expected one of {GRANULARITIES}")
        if modality == "text":
            return None if self.text is None else self.text[None, :]
        if modality == "image":
            if self.images is None or len(self.images) == 0:
                return None
            if granularity == "region" and self.regions is not None and len(self.regions):
                first = self.regions[self.region_image == 0] if self.region_image is not None else self.regions
                if len(first):
                    return first
            return self.images[:1]
        if granularity == "region" and self.regions is not None and len(self.regions):
            return self.regions
        return None if self.note is None else self.note[None, :]


@dataclass
class NoteEmbeddings:
    note_ids: list[str]
    note: np.ndarray
    text: np.ndarray
    image: np.ndarray
    image_owner: np.ndarray
    region: np.ndarray
    region_owner: np.ndarray
    region_image: np.ndarray  # (R,) index of the photo within its note
    model_version: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.image_owner = np.asarray(self.image_owner, dtype=np.int64)
        self.region_owner = np.asarray(self.region_owner, dtype=np.int64)
        self.region_image = np.asarray(self.region_image, dtype=np.int64)
        n = len(self.note_ids)
        if self.note.shape[0] != n or self.text.shape[0] != n:
            raise ValueError("note and text matrices must have one row per note id")
        if len(self.image) != len(self.image_owner) or len(self.region) != len(self.region_owner):
            raise ValueError("every image/region vector needs an owner")
        self._row = {nid: i for i, nid in enumerate(self.note_ids)}
        if len(self._row) != n:
            raise ValueError("duplicate note ids in embeddings")

    def __len__(self) -> int:
        return len(self.note_ids)

    @property
    def dim(self) -> int:
        return int(self.note.shape[1])

    def row(self, note_id: str) -> int:
        try:
            return self._row[note_id]
        except KeyError:
            raise KeyError(f"note {note_id!r} is not in these embeddings") from None

    def truncate(self, dim: int) -> "NoteEmbeddings":
        if dim == self.dim:
            return self
        return NoteEmbeddings(
            self.note_ids, truncate(self.note, dim), truncate(self.text, dim),
            truncate(self.image, dim), self.image_owner, truncate(self.region, dim),
            self.region_owner, self.region_image, self.model_version, dict(self.meta, dim=dim),
        )

    def rows(self, start: int, stop: int) -> "NoteEmbeddings":
        """Notes ``start..stop-1`` with their photos and regions (owner rows relative to ``start``)."""
        img = np.flatnonzero((self.image_owner >= start) & (self.image_owner < stop))
        reg = np.flatnonzero((self.region_owner >= start) & (self.region_owner < stop))
        return NoteEmbeddings(
            self.note_ids[start:stop], np.asarray(self.note[start:stop]), np.asarray(self.text[start:stop]),
            np.asarray(self.image[img]).reshape(len(img), self.dim), self.image_owner[img] - start,
            np.asarray(self.region[reg]).reshape(len(reg), self.dim), self.region_owner[reg] - start,
            self.region_image[reg], self.model_version, dict(self.meta))

    def vectors(self, granularity: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(vectors, owner) for an index granularity; owner is None for one-vector-per-note."""
        if granularity == "note":
            return self.note, None
        if granularity == "text":
            return self.text, None
        if granularity == "image":
            return self.image, self.image_owner
        if granularity == "region":
            return self.region, self.region_owner
        raise ValueError(f"unknown granularity {granularity!r}; expected one of {GRANULARITIES}")

    def query(self, note_id_or_row: str | int) -> QueryEmbedding:
        i = note_id_or_row if isinstance(note_id_or_row, (int, np.integer)) else self.row(note_id_or_row)
        img_rows = np.flatnonzero(self.image_owner == i)
        reg_rows = np.flatnonzero(self.region_owner == i)
        return QueryEmbedding(
            note=self.note[i], text=self.text[i],
            images=self.image[img_rows] if len(img_rows) else None,
            regions=self.region[reg_rows] if len(reg_rows) else None,
            region_image=self.region_image[reg_rows] if len(reg_rows) else None,
        )

    def checksum(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(self.note_ids).encode())
        for a in (self.note, self.text, self.image, self.image_owner, self.region, self.region_owner):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    # --- persistence: shards of .npy files (memory-mapped on load), never pickle ----------------
    def save(self, directory: str | Path, dtypes: dict[str, str] | str | None = None,
             shard_notes: int | None = None, regions: bool = True) -> Path:
        """Write shards (``uninote.embedding_store``): ``dtypes`` per granularity (float16 default,
        or float32), ``shard_notes`` notes per shard, ``regions=False`` stores no region vectors."""
        return save_sharded(self, directory, dtypes, shard_notes or DEFAULT_SHARD_NOTES, regions)

    @classmethod
    def load(cls, directory: str | Path, verify: bool = False) -> "NoteEmbeddings":
        """Open a version's embeddings: shards memory-mapped (no vector read until used; ``verify``
        checks every shard's checksum first), or the older single safetensors file, into RAM."""
        d = Path(directory)
        if is_sharded(d):
            return load_sharded(cls, d, verify=verify)
        if not (d / "embeddings.json").is_file():
            raise FileNotFoundError(f"{d}: no embeddings here (neither manifest.json nor embeddings.json)")
        return cls._load_safetensors(d)

    @classmethod
    def _load_safetensors(cls, d: Path) -> "NoteEmbeddings":
        """The format before shards (``embeddings.safetensors`` + ``embeddings.json``), read into RAM."""
        info = json.loads((d / "embeddings.json").read_text())
        t = load_file(str(d / "embeddings.safetensors"))
        emb = cls(info["note_ids"], t["note"], t["text"], t["image"], t["image_owner"], t["region"],
                  t["region_owner"], t["region_image"], info["model_version"], info.get("meta", {}))
        if emb.checksum() != info["checksum"]:
            raise ValueError(f"{d}: embeddings checksum mismatch (file corrupted or edited)")
        return emb
