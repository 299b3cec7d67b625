"""Photo batches for the model, opened by the data package's safe loader: ``photo_batches``
decodes a corpus's photos into uint8 batches on a thread, ahead of the model."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from uninote.data.images import load_image
from uninote.errors import ImageError
from uninote.model.towers import load_pixels


def decode_batch(paths, size: int):
    """(uint8 pixels (B, 3, size, size) or None, indexes of the readable paths, 'path: why' of the rest)."""
    images, kept, broken = [], [], []
    for j, path in enumerate(paths):
        try:
            images.append(load_image(path))
            kept.append(j)
        except (ImageError, OSError) as exc:
            broken.append(f"{path}: {exc}")
    return (load_pixels(images, size) if images else None), kept, broken


def photo_batches(paths: list, size: int, batch_size: int, ahead: int = 2):
    """``decode_batch`` of each run of ``batch_size`` paths, in order, decoded up to ``ahead`` batches
    before they are asked for: PIL and ONNX Runtime release the GIL, so decoding overlaps inference."""
    chunks = [paths[s:s + batch_size] for s in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="photo-decode") as pool:
        pending = [pool.submit(decode_batch, c, size) for c in chunks[:ahead]]
        for i in range(len(chunks)):
            if i + ahead < len(chunks):
                pending.append(pool.submit(decode_batch, chunks[i + ahead], size))
            yield pending.pop(0).result()
