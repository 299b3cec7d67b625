"""Small file helpers shared by the packages that persist things (indexes, exports)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file private to this process and thread, then rename.

    Readers never see a half-written file, and concurrent writers of the same content (e.g. two
    DDP ranks filling one cache) cannot rename each other's temp file away.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sha256_file(path: str | Path, block_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in blocks (large index files never sit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(block_size), b""):
            h.update(block)
    return h.hexdigest()
