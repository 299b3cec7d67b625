"""Row-sharded arrays on disk, written shard by shard and opened memory-mapped.

A sharded folder holds named arrays (``note``, ``note_owner``, ...) cut into shards of rows::

    manifest.json            format, per-array dtype and row width, user meta, one entry per
                             complete shard: name, rows per array, ids, bytes + sha256 per file
    shard-00000/<array>.npy  plain ``.npy`` files (``np.load(mmap_mode="r")`` opens them)
    shard-00001/...

``ShardWriter`` appends one shard per ``write`` call: the files go to a temporary folder that is
renamed into place, then the manifest is rewritten atomically, so a crash leaves either a complete
shard listed in the manifest or nothing. Reopening the folder with ``ShardWriter(..., resume=True)``
keeps the listed shards (after checking their checksums) and continues at the first missing one.
``ShardWriter(..., append=True)`` adds shards to a complete folder that readers may have open:
the manifest says complete after every write, so a reader (or a crash) sees the shards listed so far.

``open_shards`` checks every file's existence and byte size (cheap) and maps the arrays;
``verify`` reads every file and compares its sha256 with the manifest. Both raise
``CorruptShardError`` naming the shard and the file. An array spread over several shards is a
``ShardedArray`` (the shards' memory maps side by side); one shard is the ``np.memmap`` itself.
Nothing is read into RAM until rows are indexed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from uninote.errors import UniNoteError
from uninote.fileio import atomic_write, sha256_file

FORMAT = "uninote-shards/1"
MANIFEST = "manifest.json"


class CorruptShardError(UniNoteError, ValueError):
    """A shard file is missing, truncated, or fails its checksum."""


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


class ShardedArray:
    """Rows of several memory-mapped shards read as one array (only what is indexed is read).

    Supports ``len``, ``shape``, ``dtype``, row indexing by int, slice or integer array (optionally
    with a column slice: ``a[rows, :64]``), ``blocks()`` to stream the shards, and ``np.asarray``
    (which reads every row: only for small arrays).
    """

    def __init__(self, parts: list[np.ndarray]):
        if not parts:
            raise ValueError("a sharded array needs at least one part")
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),) + tuple(self.parts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    @property
    def ndim(self) -> int:
        return self.parts[0].ndim

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, shard array) for every shard, in order."""
        for start, part in zip(self.offsets, self.parts):
            yield int(start), part

    def take(self, rows: np.ndarray, cols: slice = slice(None)) -> np.ndarray:
        """Rows (any order, repeats allowed) gathered from their shards."""
        rows = np.asarray(rows, dtype=np.int64)
        flat = rows.reshape(-1)
        if len(flat) and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        shard = np.searchsorted(self.offsets, flat, side="right") - 1
        out = np.empty((len(flat),) + self.parts[0][:1, cols].shape[1:], self.dtype)
        for s in np.unique(shard):
            hit = shard == s
            out[hit] = self.parts[s][flat[hit] - self.offsets[s]][:, cols] if self.ndim > 1 else \
                self.parts[s][flat[hit] - self.offsets[s]]
        return out.reshape(rows.shape + out.shape[1:])

    def __getitem__(self, key):
        rows, cols = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if rows is Ellipsis:
            rows = slice(None)
        if isinstance(rows, (int, np.integer)):
            i = int(rows) + (len(self) if rows < 0 else 0)
            return self.take(np.array([i]))[0][cols] if cols else self.take(np.array([i]))[0]
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        if len(cols) == 1 and isinstance(cols[0], slice):
            return self.take(np.asarray(rows), cols[0])
        out = self.take(np.asarray(rows))
        return out[(slice(None),) + cols] if cols else out

    def __array__(self, dtype=None, copy=None):
        out = np.concatenate([np.asarray(p) for p in self.parts])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ShardedArray(shape={self.shape}, dtype={self.dtype}, shards={len(self.parts)})"


def _file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_shard_files(folder: str | Path, arrays: dict[str, np.ndarray], dtypes: dict[str, str],
                      ids: list[str] | None = None) -> dict:
    """Write one shard's ``.npy`` files (and ``ids.json``) into the new folder ``folder``, each
    flushed to disk; returns its manifest entry (rows per array, bytes + sha256 per file).

    ``ShardWriter.write`` calls it on a temporary folder; a worker on another machine can call it
    too and hand the folder and entry to ``ShardWriter.adopt``."""
    missing = set(dtypes) ^ set(arrays)
    if missing:
        raise ValueError(f"shard arrays {sorted(arrays)} do not match the writer's {sorted(dtypes)}")
    folder = Path(folder)
    folder.mkdir(parents=True)
    entry = {"rows": {}, "files": {}}
    for key, dtype in dtypes.items():
        a = np.ascontiguousarray(arrays[key], dtype=dtype)
        path = folder / f"{key}.npy"
        with open(path, "wb") as fh:
            np.save(fh, a)
            fh.flush()
            os.fsync(fh.fileno())
        entry["rows"][key] = int(len(a))
        entry["files"][f"{key}.npy"] = _file_entry(path)
    if ids is not None:
        path = folder / "ids.json"
        path.write_text(json.dumps(list(ids), ensure_ascii=False))
        entry["files"]["ids.json"] = _file_entry(path)
    return entry


def read_manifest(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {MANIFEST} (not a sharded folder)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise CorruptShardError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


class ShardWriter:
    """Append shards of named arrays to a folder; ``resume=True`` continues an interrupted write.

    ``arrays`` maps every array name to its storage dtype (e.g. ``{"note": "float16",
    "note_owner": "int64"}``); every ``write`` must give all of them (zero rows is fine).
    """

    def __init__(self, directory: str | Path, arrays: dict[str, str], meta: dict[str, Any] | None = None,
                 resume: bool = False, append: bool = False):
        self.directory = Path(directory)
        self.arrays = {k: np.dtype(v).name for k, v in arrays.items()}
        if append:  # add shards to a folder readers may have open: it stays complete after every write
            self.manifest = read_manifest(self.directory)
            if self.manifest["arrays"] != self.arrays:
                raise ValueError(f"{self.directory}: existing shards store {self.manifest['arrays']}, "
                                 f"this write asks for {self.arrays}")
            _check_sizes(self.directory, self.manifest)
        elif resume and (self.directory / MANIFEST).is_file():
            self.manifest = read_manifest(self.directory)
            if self.manifest["arrays"] != self.arrays:
                raise ValueError(f"{self.directory}: existing shards store {self.manifest['arrays']}, "
                                 f"this write asks for {self.arrays}; write to a new folder")
            verify(self.directory, self.manifest)
            self.manifest["complete"] = False
        else:
            if (self.directory / MANIFEST).is_file():
                read_manifest(self.directory)  # refuses to replace a folder that is not sharded arrays
                shutil.rmtree(self.directory)
            self.manifest = {"format": FORMAT, "arrays": self.arrays, "complete": False, "meta": {}, "shards": []}
        self.manifest["meta"].update(meta or {})
        self.directory.mkdir(parents=True, exist_ok=True)
        self._clear_leftovers()
        self._save_manifest()

    @property
    def done(self) -> int:
        """Number of complete shards (a resumed write continues at this shard index)."""
        return len(self.manifest["shards"])

    def rows_done(self, array: str) -> int:
        return sum(s["rows"][array] for s in self.manifest["shards"])

    def _clear_leftovers(self) -> None:
        listed = {s["name"] for s in self.manifest["shards"]}
        for p in self.directory.iterdir():
            if p.is_dir() and p.name not in listed and (p.name.startswith("shard-") or p.name.startswith(".tmp-")):
                shutil.rmtree(p)

    def _save_manifest(self) -> None:
        atomic_write(self.directory / MANIFEST, json.dumps(self.manifest, ensure_ascii=False).encode())

    def write(self, arrays: dict[str, np.ndarray], ids: list[str] | None = None) -> str:
        """Write the next shard (every configured array, cast to its storage dtype); its name."""
        name = shard_name(self.done)
        tmp = self.directory / f".tmp-{name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        entry = write_shard_files(tmp, arrays, self.arrays, ids)
        return self.adopt(tmp, entry)

    def adopt(self, folder: str | Path, entry: dict) -> str:
        """Move a shard folder written by ``write_shard_files`` (here or by another process) into
        place as the next shard and list it; its files' sizes are checked against ``entry`` first."""
        folder, name = Path(folder), shard_name(self.done)
        if set(entry["rows"]) != set(self.arrays):
            raise ValueError(f"{folder}: shard arrays {sorted(entry['rows'])} do not match the writer's "
                             f"{sorted(self.arrays)}")
        _check_sizes(folder.parent, {"shards": [{"name": folder.name, "files": entry["files"]}]})
        os.replace(folder, self.directory / name)
        self.manifest["shards"].append({"name": name, "rows": entry["rows"], "files": entry["files"]})
        self._save_manifest()
        return name

    def close(self, meta: dict[str, Any] | None = None) -> Path:
        """Mark the folder complete (readers refuse an incomplete one)."""
        self.manifest["meta"].update(meta or {})
        self.manifest["complete"] = True
        self._save_manifest()
        return self.directory


def _check_sizes(directory: Path, manifest: dict) -> None:
    for shard in manifest["shards"]:
        for file, entry in shard["files"].items():
            path = directory / shard["name"] / file
            if not path.is_file():
                raise CorruptShardError(f"shard {shard['name']}: {file} is missing ({path})")
            if path.stat().st_size != entry["bytes"]:
                raise CorruptShardError(f"shard {shard['name']}: {file} has {path.stat().st_size} bytes, "
                                        f"the manifest says {entry['bytes']} (truncated or overwritten)")


def verify(directory: str | Path, manifest: dict | None = None) -> None:
    """Check every shard file's size and sha256 against the manifest (reads every byte once)."""
    directory = Path(directory)
    manifest = manifest or read_manifest(directory)
    _check_sizes(directory, manifest)
    for shard in manifest["shards"]:
        for file, entry in shard["files"].items():
            if sha256_file(directory / shard["name"] / file) != entry["sha256"]:
                raise CorruptShardError(f"shard {shard['name']}: {file} fails its checksum "
                                        f"(corrupted or edited); re-write that shard (re-run the embed "
                                        f"with the same --out to resume)")


class Shards:
    """An opened sharded folder: ``array(name)`` maps rows; ``ids()`` reads the id table."""

    def __init__(self, directory: str | Path, allow_incomplete: bool = False):
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        if not self.manifest["complete"] and not allow_incomplete:
            raise CorruptShardError(f"{self.directory}: the write was interrupted after "
                                    f"{len(self.manifest['shards'])} shards; re-run it with the same "
                                    f"output folder to resume")
        _check_sizes(self.directory, self.manifest)

    @property
    def meta(self) -> dict:
        return self.manifest["meta"]

    @property
    def names(self) -> list[str]:
        return list(self.manifest["arrays"])

    def rows(self, name: str) -> int:
        return sum(s["rows"][name] for s in self.manifest["shards"])

    def array(self, name: str) -> np.ndarray | ShardedArray:
        parts = [np.load(self.directory / s["name"] / f"{name}.npy", mmap_mode="r") for s in self.manifest["shards"]]
        if not parts:
            return np.zeros((0,), self.manifest["arrays"][name])
        # np.load maps empty arrays as plain arrays; drop empty shards so one data shard stays a memmap
        full = [p for p in parts if len(p)] or parts[:1]
        return full[0] if len(full) == 1 else ShardedArray(full)

    def ids(self) -> list[str]:
        out: list[str] = []
        for s in self.manifest["shards"]:
            out += json.loads((self.directory / s["name"] / "ids.json").read_text())
        return out

    def disk_bytes(self, name: str) -> int:
        return sum(s["files"][f"{name}.npy"]["bytes"] for s in self.manifest["shards"])

    def verify(self) -> None:
        verify(self.directory, self.manifest)


def open_shards(directory: str | Path, allow_incomplete: bool = False) -> Shards:
    return Shards(directory, allow_incomplete)
