"""Image files the service writes: gallery thumbnails and the photos of uploaded queries.

Both are written atomically (``uninote.fileio.atomic_write``), so a crash mid-write never leaves a
half JPEG that a later request would serve. Uploads are validated in full before anything is
stored: one bad photo rejects the whole upload and writes nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

from uninote.data.images import load_image
from uninote.errors import ImageError, UniNoteError
from uninote.fileio import atomic_write

log = logging.getLogger("uninote.service")


def thumbnail_path(thumbs_dir: Path, corpus_name: str, photo: str) -> Path:
    """Where the thumbnail of a corpus photo lives (hashed, so any path is a safe file name).
    Keyed by the photo, so notes that share a photo share one thumbnail."""
    key = hashlib.sha1(f"{corpus_name}\0{photo}".encode()).hexdigest()
    return thumbs_dir / key[:2] / f"{key}.jpg"


def make_thumbnail(src: Path, dst: Path, size: int) -> bool:
    """Write a JPEG of ``src`` fitting a ``size`` x ``size`` box to ``dst``; False if it is unreadable."""
    try:
        image = load_image(src)
    except UniNoteError:
        log.warning("no thumbnail for %s", src)
        return False
    image.thumbnail((size, size))
    atomic_write(dst, _jpeg(image, quality=88))
    return True


def save_upload(photos: list[bytes], title: str, body: str, uploads_dir: Path, max_photos: int,
                max_bytes: int, max_pixels: int, names: list[str] | None = None) -> tuple[str, list[str]]:
    """Validate every photo of an upload, then store them; returns the upload's digest and paths.

    Raises ``ImageError`` naming the bad photo (by its number, and by its file name when ``names``
    gives the names the user uploaded); nothing is stored unless all photos pass. The same
    upload (photos, title and body) maps to the same digest, so a retry rewrites nothing.
    """
    if not photos and not (title.strip() or body.strip()):
        raise ImageError("upload at least one photo or write a title")
    if len(photos) > max_photos:
        raise ImageError(f"{len(photos)} photos uploaded; at most {max_photos} per note")
    decoded = []
    for i, data in enumerate(photos, 1):
        try:
            decoded.append(load_image(data, max_bytes=max_bytes, max_pixels=max_pixels))
        except ImageError as exc:
            name = f" ({names[i - 1]})" if names and i <= len(names) and names[i - 1] else ""
            raise ImageError(f"photo {i}{name}: {str(exc).lstrip(': ')}") from None
    digest = hashlib.sha256(b"".join(photos) + f"\0{title}\0{body}".encode()).hexdigest()[:20]
    paths = []
    for i, image in enumerate(decoded):
        path = uploads_dir / digest[:2] / f"{digest}-{i}.jpg"
        if not path.exists():
            atomic_write(path, _jpeg(image, quality=92))
        paths.append(str(path))
    return digest, paths


def _jpeg(image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
