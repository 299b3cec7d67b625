"""Thumbnails and upload photos: written whole or not at all."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from uninote.errors import ImageError
from uninote.service.media import make_thumbnail, save_upload, thumbnail_path


def _png(size=(640, 320), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_thumbnail_fits_the_box_and_paths_are_stable_per_corpus_and_photo(tmp_path):
    src = tmp_path / "photo.png"
    src.write_bytes(_png())
    dst = thumbnail_path(tmp_path / "thumbs", "fashion", "images/with:odd chars.jpg")
    assert dst == thumbnail_path(tmp_path / "thumbs", "fashion", "images/with:odd chars.jpg")
    assert dst != thumbnail_path(tmp_path / "thumbs", "other-corpus", "images/with:odd chars.jpg")
    assert dst.parent.parent == tmp_path / "thumbs"  # hashed: a photo path never becomes a path
    assert make_thumbnail(src, dst, size=64)
    with Image.open(dst) as im:
        assert im.format == "JPEG" and im.size == (64, 32)


def test_unreadable_photo_makes_no_thumbnail(tmp_path):
    src = tmp_path / "broken.jpg"
    src.write_bytes(b"\xff\xd8 not really a jpeg")
    dst = tmp_path / "thumbs" / "x.jpg"
    assert not make_thumbnail(src, dst, size=64)
    assert not dst.exists()


def test_upload_with_one_bad_photo_stores_nothing(tmp_path):
    with pytest.raises(ImageError, match="photo 2"):
        save_upload([_png(), b"garbage"], "title", "", tmp_path, max_photos=4,
                    max_bytes=1 << 20, max_pixels=10_000_000)
    assert not any(tmp_path.rglob("*.jpg"))


def test_upload_error_names_the_file_the_user_chose(tmp_path):
    with pytest.raises(ImageError, match=r"^photo 2 \(holiday\.png\): "):
        save_upload([_png(), b"garbage"], "title", "", tmp_path, max_photos=4, max_bytes=1 << 20,
                    max_pixels=10_000_000, names=["beach.png", "holiday.png"])


def test_same_upload_maps_to_the_same_files(tmp_path):
    args = ([_png(), _png(colour=(0, 0, 255))], "red and blue", "", tmp_path)
    limits = {"max_photos": 4, "max_bytes": 1 << 20, "max_pixels": 10_000_000}
    digest, paths = save_upload(*args, **limits)
    assert len(paths) == 2 and all(p.endswith(".jpg") for p in paths)
    assert save_upload(*args, **limits) == (digest, paths)
    assert save_upload(args[0], "another title", "", tmp_path, **limits)[0] != digest
