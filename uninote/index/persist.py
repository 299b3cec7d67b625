"""Index folders on disk: a JSON manifest, safetensors vectors, faiss files - verified before use.

Layout of a saved retriever::

    manifest.json          format, model_version, full_dim, slots, config, one entry per file
                           and per index (granularity, dim, kind, count, vectors checksum)
    ids.json               note id of every slot (removed notes keep their slot, marked dead)
    vectors.safetensors    full-dim matrices (note, text, image, region + owners) and ``alive``
    <gran>-d<dim>-<kind>.faiss   one file per ANN index (flat indexes are re-derived by truncation)

Every file's byte size and sha256 are in the manifest and are checked *before* the bytes reach
safetensors or faiss, so a truncated or corrupted file raises ``CorruptIndexError`` with the file
name instead of crashing the process. The model version is checked before anything large is read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import faiss
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from uninote.errors import ModelMismatchError, UniNoteError
from uninote.fileio import sha256_file

FORMAT = "uninote-index/1"
MANIFEST = "manifest.json"


class CorruptIndexError(UniNoteError, ValueError):
    """An index folder is missing a file, or a file is truncated, corrupted or edited."""


def vectors_checksum(vectors: np.ndarray, owner: np.ndarray | None) -> str:
    """Short sha256 of a vector matrix (and its owner slots): what an index was built from."""
    h = hashlib.sha256(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    if owner is not None:
        h.update(np.ascontiguousarray(owner, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def file_entry(path: Path) -> dict:
    """The manifest record of a written file: name, size, sha256."""
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def verify_file(directory: Path, entry: dict) -> Path:
    """The path of a manifest file entry after checking it exists, has its size and its sha256."""
    path = directory / entry["file"]
    if not path.is_file():
        raise CorruptIndexError(f"{path}: missing (listed in {directory / MANIFEST})")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise CorruptIndexError(f"{path}: {size} bytes, manifest says {entry['bytes']} (truncated or "
                                f"overwritten); rebuild with `uninote index build`")
    if sha256_file(path) != entry["sha256"]:
        raise CorruptIndexError(f"{path}: checksum mismatch (corrupted or edited); rebuild with "
                                f"`uninote index build`")
    return path


def write_faiss(index, path: Path) -> dict:
    faiss.write_index(index, str(path))
    return file_entry(path)


def read_faiss(directory: Path, entry: dict):
    """A verified faiss index file; faiss only ever sees bytes whose checksum matched."""
    path = verify_file(directory, entry)
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:  # checksum matched but faiss still refuses: wrong writer
        raise CorruptIndexError(f"{path}: faiss cannot read it ({str(exc).splitlines()[0]})") from None


def write_json(path: Path, obj) -> dict:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1))
    return file_entry(path)


def read_manifest(directory: str | Path, model_version: str | None = None) -> dict:
    """The manifest of an index folder, refusing another model's index before reading vectors."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise CorruptIndexError(f"{path}: no index manifest here; build one with `uninote index build`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptIndexError(f"{path}: not a {FORMAT} manifest")
    built_with = manifest.get("model_version")
    if model_version is not None and built_with != model_version:
        raise ModelMismatchError(
            f"{directory}: index was built with model version {built_with!r} but the model in use is "
            f"{model_version!r}; rebuild it with `uninote index build --model ...`")
    return manifest


def load_vectors(directory: Path, entry: dict) -> dict[str, np.ndarray]:
    path = verify_file(directory, entry)
    try:
        return load_file(str(path))
    except (SafetensorError, ValueError) as exc:
        raise CorruptIndexError(f"{path}: unreadable safetensors ({exc})") from None
