"""Small file helpers shared by the packages that persist things (indexes, exports)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path, block_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in blocks (large index files never sit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(block_size), b""):
            h.update(block)
    return h.hexdigest()
