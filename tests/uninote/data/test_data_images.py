"""load_image / check_image_file on good, truncated, bomb, fake and oversized inputs."""

from __future__ import annotations

import struct
import zlib

import pytest
from data_testkit import jpeg_bytes

from uninote.data import load_image
from uninote.data.images import check_image_file
from uninote.errors import ImageError


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_loads_allowed_formats_as_rgb(tmp_path, fmt):
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(jpeg_bytes(1, size=(20, 10), fmt=fmt))
    for source in (path, str(path), path.read_bytes()):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (20, 10)
    assert check_image_file(path) is None


def test_truncated_jpeg_is_refused(tmp_path):
    data = jpeg_bytes(2, size=(64, 64))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated JPEG"):
        load_image(path)
    assert "truncated JPEG" in check_image_file(path)
    from PIL import Image  # the reason for our own check: PIL's verify() accepts the cut file
    Image.open(path).verify()


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_claiming(100_000, 100_000))
    assert path.stat().st_size < 200
    with pytest.raises(ImageError, match=r"bomb\.png: image declares too many pixels, over the limit of "
                       r"40,000,000 \(refused before decoding"):
        load_image(path)
    with pytest.raises(ImageError, match=r"declares 4000x3000 = 12,000,000 pixels, over the limit of 10,000,000 "
                       r"\(refused before decoding\)"):
        load_image(png_header_claiming(4000, 3000), max_pixels=10_000_000)
    assert "pixels" in check_image_file(path)


def test_text_file_renamed_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a photo\n" * 20)
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image .*unrecognised file signature"):
        load_image(path)
    assert "unrecognised" in check_image_file(path)


def test_oversized_file(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(3, size=(200, 200)))
    size = path.stat().st_size
    with pytest.raises(ImageError, match=rf"big\.jpg: image is {size:,} bytes, over the limit of 1,000"):
        load_image(path, max_bytes=1000)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(path.read_bytes(), max_bytes=1000)
    assert "over the limit" in check_image_file(path, max_bytes=1000)


def test_missing_empty_and_disallowed(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.jpg: image file not found"):
        load_image(tmp_path / "nope.jpg")
    assert check_image_file(tmp_path / "nope.jpg") == "image file not found"
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="GIF images are not accepted"):
        load_image(jpeg_bytes(1, fmt="GIF"), allowed_formats=("JPEG", "PNG"))


def test_corrupt_body_with_intact_markers(tmp_path):
    data = bytearray(jpeg_bytes(4, size=(64, 64)))
    data[300:-10] = bytes(len(data) - 310)
    with pytest.raises(ImageError, match="corrupt or unreadable JPEG"):
        load_image(bytes(data))
