"""Helpers for tests and examples: a tiny random-weight config and a small synthetic native corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from uninote.model.config import UniNoteConfig

COLOURS = {"red": (200, 30, 30), "blue": (30, 40, 200), "green": (30, 170, 40), "black": (15, 15, 15)}
KINDS = ("shirt", "shoe", "watch")


def tiny_config(**overrides) -> UniNoteConfig:
    """A config with tiny random towers (no files needed), small dims and 2x2 regions."""
    base = dict(text_tower="tiny", image_tower="tiny", embed_dim=32, matryoshka_dims=[8, 16, 32],
                n_regions=2, image_size=32, max_text_tokens=32, hidden_dim=32, tiny_width=16)
    base.update(overrides)
    return UniNoteConfig(**base).validate()


def _photo(kind: str, colour: str, rng: np.random.Generator, size: int = 40):
    arr = np.full((size, size, 3), 235, dtype=np.uint8)
    c = np.array(COLOURS[colour]) + rng.integers(-20, 20, 3)
    k = KINDS.index(kind)
    s = rng.integers(4, 10)
    if k == 0:
        arr[s:size - s, s:size - s] = c
    elif k == 1:
        arr[size // 2:size - s, s:size - 2] = c
    else:
        arr[s:size - s, size // 2 - 6:size // 2 + 6] = c
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_synthetic_corpus(root: str | Path, n_notes: int = 48, seed: int = 0, broken: int = 0,
                          text_only: int = 2, multi_image: int = 4) -> Path:
    """Write a native corpus folder: kind x colour notes with photos, qrels (grades 0-3) and pairs.

    The last ``text_only`` notes have no photo, the first ``multi_image`` have two, and ``broken``
    notes point at a corrupt JPEG.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    notes, labels = [], []
    for i in range(n_notes):
        kind, colour = KINDS[i % len(KINDS)], list(COLOURS)[(i // len(KINDS)) % len(COLOURS)]
        labels.append((kind, colour))
        images = []
        n_img = 0 if i >= n_notes - text_only else (2 if i < multi_image else 1)
        for j in range(n_img):
            rel = f"images/{i}_{j}.png"
            _photo(kind, colour, rng).save(root / rel)
            images.append(rel)
        if i < broken:
            (root / f"images/broken_{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
            images.append(f"images/broken_{i}.jpg")
        notes.append({"note_id": f"n{i}", "title": f"{colour} {kind} number {i}", "body": "",
                      "tags": [kind], "images": images, "meta": {}})
    with open(root / "notes.jsonl", "w") as f:
        for n in notes:
            f.write(json.dumps(n) + "\n")
    with open(root / "qrels.tsv", "w") as f, open(root / "pairs.jsonl", "w") as pf:
        f.write("query_id\tnote_id\tgrade\n")
        for i, (ki, ci) in enumerate(labels):
            same = [j for j, (kj, cj) in enumerate(labels) if j != i and kj == ki and cj == ci]
            other = [j for j, (kj, _) in enumerate(labels) if kj != ki]
            for j, (kj, cj) in enumerate(labels):
                if j != i:
                    f.write(f"n{i}\tn{j}\t{3 if (kj, cj) == (ki, ci) else (2 if kj == ki else 0)}\n")
            if same:
                neg = rng.choice(other, size=2, replace=False)
                pf.write(json.dumps({"query_id": f"n{i}", "positive_id": f"n{int(rng.choice(same))}",
                                     "negative_ids": [f"n{int(j)}" for j in neg]}) + "\n")
    return root
