"""Opening photos for the model: ``uninote.data.images.load_image`` when present, else plain PIL."""

from __future__ import annotations

from pathlib import Path

from uninote.errors import ImageError


def open_image(path: str | Path):
    """An RGB PIL image, or ``ImageError`` naming the file when it is missing or unreadable."""
    try:
        from uninote.data.images import load_image
    except ImportError:  # the data package's loader is not there yet
        load_image = None
    if load_image is not None:
        return load_image(path)
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None
