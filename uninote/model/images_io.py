"""Opening photos for the model, through the data package's safe loader."""

from __future__ import annotations

from pathlib import Path

from uninote.data.images import load_image


def open_image(path: str | Path):
    """An RGB PIL image, or ``ImageError`` naming the file when it is missing or unreadable."""
    return load_image(path)
