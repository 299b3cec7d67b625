"""Index folders on disk: a JSON manifest, safetensors vectors, faiss files - verified before use.

Layout of a saved retriever::

    manifest.json          format, model_version, full_dim, slots, config, one entry per file
                           and per index (granularity, dim, kind, count, vectors checksum)
    ids.json               note id of every slot (removed notes keep their slot, marked dead)
    vectors.safetensors    full-dim matrices (note, text, image, region + owners) and ``alive``,
                           written block by block (``write_vectors``) and opened memory-mapped
                           (``map_vectors``): loading reads no vector into RAM
    <gran>-d<dim>-<kind>.faiss   one file per ANN index (flat indexes are re-derived by truncation)

Every file's byte size and sha256 are in the manifest and are checked *before* the bytes reach
safetensors or faiss, so a truncated or corrupted file raises ``CorruptIndexError`` with the file
name instead of crashing the process. The model version is checked before anything large is read.
The vectors file's sha256 is checked on load up to ``VERIFY_MAX_BYTES`` (reading a bigger one at
every open would cost what memory-mapping saves: its size is checked, and ``verify=True`` reads it).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Iterable

import faiss
import numpy as np

from uninote.errors import ModelMismatchError, UniNoteError
from uninote.fileio import sha256_file

FORMAT = "uninote-index/1"
MANIFEST = "manifest.json"
VERIFY_MAX_BYTES = 1 << 30  # vectors files up to 1 GiB are sha256-checked at every load
_DTYPES = {"float32": "F32", "float16": "F16", "int64": "I64", "uint8": "U8"}


class CorruptIndexError(UniNoteError, ValueError):
    """An index folder is missing a file, or a file is truncated, corrupted or edited."""


def vectors_checksum(blocks: Iterable[np.ndarray], owner: np.ndarray | None) -> str:
    """Short sha256 of a vector matrix given as row blocks in order (and its owner slots): what
    an index was built from. The same digest as hashing the whole float32 matrix at once."""
    h = hashlib.sha256()
    for block in blocks:
        h.update(np.ascontiguousarray(block, dtype=np.float32).tobytes())
    if owner is not None:
        h.update(np.ascontiguousarray(owner, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def write_vectors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], Iterable[np.ndarray]]]) -> dict:
    """Write a safetensors file from ``{name: (dtype, shape, row blocks)}``, one block in RAM at a
    time (``safetensors.numpy.load_file`` reads it like any other); its manifest entry."""
    names = sorted(tensors, key=lambda k: -np.dtype(tensors[k][0]).itemsize)  # 8-byte types first: aligned
    header, offset = {}, 0
    for name in names:
        dtype, shape, _ = tensors[name]
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": _DTYPES[np.dtype(dtype).name], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for name in names:
            dtype, shape, blocks = tensors[name]
            written = 0
            for block in blocks:
                block = np.ascontiguousarray(block, dtype=dtype)
                fh.write(block.tobytes())
                written += block.size
            if written != int(np.prod(shape)):
                raise ValueError(f"{path}: tensor {name} got {written} values, its shape {shape} needs {int(np.prod(shape))}")
        fh.flush()
        os.fsync(fh.fileno())
    return file_entry(path)


def map_vectors(directory: Path, entry: dict, verify: bool | None = None) -> dict[str, np.ndarray]:
    """The tensors of a safetensors vectors file as read-only memory maps (empty ones as arrays).

    The file's size is always checked against the manifest; its sha256 when ``verify`` (default:
    when the file is at most ``VERIFY_MAX_BYTES``)."""
    path = directory / entry["file"]
    if verify is None:
        verify = not path.is_file() or path.stat().st_size <= VERIFY_MAX_BYTES
    if verify:
        verify_file(directory, entry)
    else:
        check_size(directory, entry)
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        header.pop("__metadata__", None)
        dtypes = {v: k for k, v in _DTYPES.items()}
        out = {}
        for name, t in header.items():
            begin, end = t["data_offsets"]
            dtype, shape = np.dtype(dtypes[t["dtype"]]), tuple(t["shape"])
            if end - begin != int(np.prod(shape)) * dtype.itemsize or 8 + n + end > path.stat().st_size:
                raise ValueError(f"tensor {name}: offsets {begin}..{end} do not fit its shape {shape}")
            out[name] = np.zeros(shape, dtype) if end == begin else \
                np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=shape)
        return out
    except (KeyError, ValueError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{path}: unreadable safetensors ({exc})") from None


def file_entry(path: Path) -> dict:
    """The manifest record of a written file: name, size, sha256."""
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def check_size(directory: Path, entry: dict) -> Path:
    """The path of a manifest file entry after checking it exists and has its size."""
    path = directory / entry["file"]
    if not path.is_file():
        raise CorruptIndexError(f"{path}: missing (listed in {directory / MANIFEST})")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise CorruptIndexError(f"{path}: {size} bytes, manifest says {entry['bytes']} (truncated or "
                                f"overwritten); rebuild with `uninote index build`")
    return path


def verify_file(directory: Path, entry: dict) -> Path:
    """The path of a manifest file entry after checking it exists, has its size and its sha256."""
    path = check_size(directory, entry)
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

