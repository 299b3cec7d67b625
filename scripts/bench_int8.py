"""Backbone feature throughput: INT8 towers (``--runtime onnx-int8``) against float ONNX, same run.

The first ``--photos`` photos and as many note texts of a corpus are decoded once (photos to the
uint8 batches the pipeline feeds the image tower), then each runtime runs them through its towers
(photo: pooled and region features; text: mean-pooled features). The runtimes alternate over
``--rounds`` so a change of load on a shared machine hits both; each one's best round is reported,
the speed-up is against the last runtime. Setup (for INT8 the float export, quantisation and the
check against torch, or the cached files) is timed apart. A last table gives the smallest cosine
between the two runtimes' features.

Usage:
    python scripts/bench_int8.py --model $M/sft-fashion --corpus $P/fashion-test --photos 256 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from uninote.data import load_corpus
from uninote.data.images import load_image
from uninote.model import UniNoteConfig, UniNoteModel, load_model
from uninote.model.onnx_runtime import smallest_cosine
from uninote.model.towers import load_pixels


def load(n: int, corpus_spec: str, size: int):
    corpus = load_corpus(corpus_spec)
    photos, texts = [], []
    for note in corpus.notes:
        texts.append(note.text())
        photos += [corpus.image_path(note, i) for i in range(len(note.images))]
        if len(photos) >= n and len(texts) >= n:
            break
    return [load_image(p) for p in photos[:n]], texts[:n]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus (native folder or any load_corpus source)")
    p.add_argument("--model", default=None, help="checkpoint folder (default: the default config)")
    p.add_argument("--photos", type=int, default=256, help="photos (and note texts) to run")
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime CPU threads")
    p.add_argument("--batch-size", type=int, default=64, help="photos / texts per backbone call")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per runtime (best is kept)")
    p.add_argument("--runtimes", default="onnx-int8,onnx", help="comma-separated runtimes to compare")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    load_avg = lambda: " ".join(f"{x:.1f}" for x in os.getloadavg())  # noqa: E731
    runtimes = [r for r in args.runtimes.split(",") if r]
    models = {}
    setups = {}
    for r in runtimes:
        start = time.perf_counter()
        model = load_model(args.model, runtime=r) if args.model else UniNoteModel(UniNoteConfig())
        model.runtime = r
        towers = {k: model.backbone(k) for k in ("image", "text")}
        setups[r] = time.perf_counter() - start
        models[r] = model
        for k, t in towers.items():
            print(f"{r} {k}: {type(t).__name__} {getattr(t, 'path', '')} check: largest |diff| "
                  f"{getattr(t, 'check_difference', float('nan')):.3g}, smallest cosine "
                  f"{getattr(t, 'check_cosine', float('nan')):.5f}", flush=True)
    size = next(iter(models.values())).config.image_size
    images, texts = load(args.photos, args.corpus, size)
    b = args.batch_size
    pixels = [load_pixels(images[i:i + b], size) for i in range(0, len(images), b)]
    text_batches = [texts[i:i + b] for i in range(0, len(texts), b)]
    print(f"{len(images)} photos, {len(texts)} texts, batch {b}, threads {args.threads}; load average {load_avg()}")
    best = {r: {"photo": float("inf"), "text": float("inf")} for r in runtimes}
    out = {}
    with torch.inference_mode():
        for round_ in range(args.rounds):
            for r in runtimes:
                m = models[r]
                t0 = time.perf_counter()
                pooled = torch.cat([m.pixel_features(x)[0] for x in pixels])
                t1 = time.perf_counter()
                text = torch.cat([m.text_features(x) for x in text_batches])
                t2 = time.perf_counter()
                best[r]["photo"], best[r]["text"] = min(best[r]["photo"], t1 - t0), min(best[r]["text"], t2 - t1)
                out[r] = (pooled.numpy(), text.numpy())
                print(f"round {round_ + 1} {r}: photos {t1 - t0:.2f}s, texts {t2 - t1:.2f}s; "
                      f"load average {load_avg()}", flush=True)
    base = best[runtimes[-1]]
    print(f"\n| runtime | setup s | photos/s | photo speed-up | texts/s | text speed-up |  (load average after: {load_avg()})")
    print("|---|---:|---:|---:|---:|---:|")
    for r in runtimes:
        t = best[r]
        print(f"| {r} | {setups[r]:.1f} | {len(images) / t['photo']:.1f} | {base['photo'] / t['photo']:.2f}x | "
              f"{len(texts) / t['text']:.1f} | {base['text'] / t['text']:.2f}x |")
    if len(runtimes) > 1:
        a, z = out[runtimes[0]], out[runtimes[-1]]
        print(f"\nsmallest cosine {runtimes[0]} vs {runtimes[-1]}: pooled photo features "
              f"{smallest_cosine(a[0], z[0]):.5f}, text features {smallest_cosine(a[1], z[1]):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
