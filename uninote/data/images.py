"""Opening photos safely: one function for corpus images and user uploads alike.

``load_image`` decodes to RGB and refuses anything that is missing, corrupt, truncated, too large
(in bytes, or in pixels as declared by the header, so decompression bombs are stopped before any
decoding), or of a format we do not accept. ``check_image_file`` is the cheap check a corpus loader
runs on thousands of files: header parse plus an end-of-file marker test, no pixel decoding.

Why an end marker test: ``PIL.Image.verify()`` does not notice a JPEG cut short (it only checks
the header), and a full decode of every photo at load time is too slow. Every format we accept has
a cheap trailer that a truncated file lacks: JPEG ends with the EOI marker ``FFD9``, PNG with an
``IEND`` chunk, GIF with ``;``, WEBP's RIFF header states the file size, and so does BMP's.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

from PIL import Image

from uninote.errors import ImageError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def sniff_format(head: bytes) -> str | None:
    """The format named by a file's first bytes, or None when we do not recognise it."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def trailer_problem(fmt: str, data_head: bytes, data_tail: bytes, size: int) -> str | None:
    """Why the file looks truncated, or None. Needs the first 16 and last 64 bytes and the size."""
    if fmt == "JPEG":
        # FFD9 cannot occur inside entropy-coded data (FF is always stuffed), so a file that
        # lacks it near its end was cut short. A few bytes of padding after EOI are tolerated.
        return None if b"\xff\xd9" in data_tail[-64:] else "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG":
        return None if b"IEND" in data_tail[-64:] else "truncated PNG (no IEND chunk)"
    if fmt == "GIF":
        return None if data_tail.rstrip(b"\x00").endswith(b";") else "truncated GIF (no trailer)"
    if fmt == "WEBP":
        declared = struct.unpack("<I", data_head[4:8])[0] + 8
        return None if size >= declared else f"truncated WEBP ({size} of {declared} bytes)"
    if fmt == "BMP":
        declared = struct.unpack("<I", data_head[2:6])[0]
        return None if size >= declared else f"truncated BMP ({size} of {declared} bytes)"
    return None


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<{len(source)} bytes>"


def _read_bytes(source, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{path}: image file not found")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(f"{path}: image is {size:,} bytes, over the limit of {max_bytes:,}")
        data = path.read_bytes()
    if len(data) > max_bytes:
        raise ImageError(f"{_describe(source)}: image is {len(data):,} bytes, over the limit of {max_bytes:,}")
    return data


def _check_header(data: bytes, where: str, allowed_formats) -> str:
    """Format sniff, trailer test and pixel budget from the header alone; returns the format."""
    if not data:
        raise ImageError(f"{where}: image is empty (0 bytes)")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise ImageError(f"{where}: not an image we can read (unrecognised file signature)")
    if fmt not in allowed_formats:
        raise ImageError(f"{where}: {fmt} images are not accepted (allowed: {', '.join(allowed_formats)})")
    problem = trailer_problem(fmt, data[:16], data[-64:], len(data))
    if problem:
        raise ImageError(f"{where}: {problem}")
    return fmt


def load_image(
    source: str | Path | bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> Image.Image:
    """Open a photo from a path or raw bytes and return it decoded as an RGB ``PIL.Image``.

    Raises ``ImageError`` (message names the file) when the image is missing, empty, over
    ``max_bytes``, declares more than ``max_pixels`` pixels in its header (checked before any
    decoding: decompression bombs), has a format outside ``allowed_formats``, is truncated, or
    fails to decode. Animated GIFs give their first frame.

    >>> load_image("images/15970.jpg").size  # doctest: +SKIP
    (60, 80)
    """
    where = _describe(source)
    data = _read_bytes(source, max_bytes)
    fmt = _check_header(data, where, allowed_formats)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{where}: image declares {width}x{height} = {width * height:,} pixels, "
                    f"over the limit of {max_pixels:,} (refused before decoding)"
                )
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # PIL's own header check
        raise ImageError(f"{where}: image declares too many pixels, over the limit of {max_pixels:,} "
                         f"(refused before decoding; {exc})") from exc
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error ...
        raise ImageError(f"{where}: corrupt or unreadable {fmt} image ({exc})") from exc
    return image.convert("RGB") if image.mode != "RGB" else image


def check_image_file(
    path: str | Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> str | None:
    """Cheap validation for corpus loading: returns None when fine, else the reason as text.

    Reads the first and last bytes and parses the header with PIL (no pixel decoding), so it
    catches missing files, unknown or disallowed formats, truncation and oversize declarations.
    Use ``load_image`` for a full decode.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64))
            tail = fh.read(64)
    except FileNotFoundError:
        return "image file not found"
    except OSError as exc:
        return f"image file unreadable ({exc.strerror or exc})"
    if size == 0:
        return "image is empty (0 bytes)"
    if size > max_bytes:
        return f"image is {size:,} bytes, over the limit of {max_bytes:,}"
    fmt = sniff_format(head)
    if fmt is None:
        return "not an image we can read (unrecognised file signature)"
    if fmt not in allowed_formats:
        return f"{fmt} images are not accepted"
    problem = trailer_problem(fmt, head, tail, size)
    if problem:
        return problem
    return _pixels_problem(path, fmt, max_pixels, f"corrupt {fmt} header")


def _pixels_problem(source, fmt: str, max_pixels: int, corrupt: str) -> str | None:
    """Open ``source`` (path or file object) header-only as ``fmt``; None when it declares a sane size."""
    try:
        with Image.open(source, formats=[fmt]) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        return f"image declares too many pixels, over the limit of {max_pixels:,}"
    except Exception as exc:
        return f"{corrupt} ({exc})"
    if width * height > max_pixels:
        return f"image declares {width}x{height} pixels, over the limit of {max_pixels:,}"
    return None


def check_image_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """``check_image_file`` for bytes in memory (e.g. a parquet cell); None when fine."""
    try:
        fmt = _check_header(data, "", ALLOWED_FORMATS)
    except ImageError as exc:
        return str(exc).lstrip(": ")
    return _pixels_problem(io.BytesIO(data), fmt, max_pixels, "corrupt image header")
