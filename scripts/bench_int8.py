"""Backbone feature throughput: INT8 towers (``--runtime onnx-int8``) against float ONNX, same run.

The first ``--photos`` photos and as many note texts of a corpus are decoded once (photos to the
uint8 batches the pipeline feeds the image tower), then each runtime runs them through its towers
(photo: pooled and region features; text: mean-pooled features). The runtimes alternate over
``--rounds`` so a change of load on a shared machine hits both; each one's best round is reported,
the speed-up is against the last runtime. Setup (for INT8 the float export, quantisation and the
check against torch, or the cached files) is timed apart. A last table gives the smallest cosine
between the two runtimes' features.

With ``--static-calibration N`` (and ``onnx`` among the runtimes) one more row, ``static-qdq``,
times an image tower that is not in the product: the float export quantised statically
(``quantize_static``, QDQ, per-channel int8 weights, uint8 activations calibrated by MinMax on the
N corpus photos after the timed ones); its text column is the float tower's.

Usage:
    python scripts/bench_int8.py --model $M/sft-fashion --corpus $P/fashion-test --photos 256 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from uninote.data import load_corpus
from uninote.data.images import load_image
from uninote.model import UniNoteConfig, UniNoteModel, load_model
from uninote.model.onnx_runtime import open_session, smallest_cosine
from uninote.model.towers import load_pixels, normalize_pixels, pool_image


def load(n: int, corpus_spec: str, size: int):
    corpus = load_corpus(corpus_spec)
    photos, texts = [], []
    for note in corpus.notes:
        texts.append(note.text())
        photos += [corpus.image_path(note, i) for i in range(len(note.images))]
        if len(photos) >= n and len(texts) >= n:
            break
    return [load_image(p) for p in photos[:n]], texts[:n]


def load_after(n: int, skip: int, corpus_spec: str):
    corpus = load_corpus(corpus_spec)
    photos = [corpus.image_path(note, i) for note in corpus.notes for i in range(len(note.images))]
    return [load_image(p) for p in photos[skip:skip + n]]


class StaticImage:
    """The float image export quantised statically (QDQ), run like ``pixel_features(...)[0]``."""

    def __init__(self, model, calibration: list[torch.Tensor], threads: int):
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        tower, self.n_regions = model.backbone("image"), model.config.n_regions
        self.mean, self.std = tower.mean, tower.std
        feeds = iter([{"pixels": normalize_pixels(p, self.mean, self.std).numpy()} for p in calibration])

        class Reader(CalibrationDataReader):
            def get_next(self):
                return next(feeds, None)

        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "static.onnx"
            quantize_static(str(tower.path), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            self.session = open_session(dst.read_bytes(), threads)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = normalize_pixels(pixels, self.mean, self.std).numpy()
        return pool_image(torch.from_numpy(self.session.run(None, {"pixels": x})[0]), self.n_regions)[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus (native folder or any load_corpus source)")
    p.add_argument("--model", default=None, help="checkpoint folder (default: the default config)")
    p.add_argument("--photos", type=int, default=256, help="photos (and note texts) to run")
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime CPU threads")
    p.add_argument("--batch-size", type=int, default=64, help="photos / texts per backbone call")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per runtime (best is kept)")
    p.add_argument("--runtimes", default="onnx-int8,onnx", help="comma-separated runtimes to compare")
    p.add_argument("--static-calibration", type=int, default=0, metavar="N",
                   help="also time a statically quantised image tower calibrated on N photos (see above)")
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
    static = None
    if args.static_calibration and "onnx" in models:
        start = time.perf_counter()
        calibration = load_after(args.static_calibration, len(images), args.corpus)
        static = StaticImage(models["onnx"], [load_pixels(calibration[i:i + 16], size)
                                              for i in range(0, len(calibration), 16)], args.threads)
        setups["static-qdq"] = time.perf_counter() - start
        runtimes = ["static-qdq"] + runtimes
        print(f"static-qdq: calibrated on {len(calibration)} photos in {setups['static-qdq']:.1f}s", flush=True)
    best = {r: {"photo": float("inf"), "text": float("inf")} for r in runtimes}
    out = {}
    with torch.inference_mode():
        for round_ in range(args.rounds):
            for r in runtimes:
                m = models["onnx" if r == "static-qdq" else r]
                run_photo = static if r == "static-qdq" else (lambda x, m=m: m.pixel_features(x)[0])
                t0 = time.perf_counter()
                pooled = torch.cat([run_photo(x) for x in pixels])
                t1 = time.perf_counter()
                text = torch.cat([m.text_features(x) for x in text_batches]) if r != "static-qdq" else None
                t2 = time.perf_counter()
                best[r]["photo"], best[r]["text"] = min(best[r]["photo"], t1 - t0), min(best[r]["text"], t2 - t1)
                out[r] = (pooled.numpy(), None if text is None else text.numpy())
                print(f"round {round_ + 1} {r}: photos {t1 - t0:.2f}s, texts {t2 - t1:.2f}s; "
                      f"load average {load_avg()}", flush=True)
    base = best[runtimes[-1]]
    print(f"\n| runtime | setup s | photos/s | photo speed-up | texts/s | text speed-up |  "
          f"(load average after: {load_avg()})")
    print("|---|---:|---:|---:|---:|---:|")
    for r in runtimes:
        t = best[r]
        text = "– | –" if r == "static-qdq" else f"{len(texts) / t['text']:.1f} | {base['text'] / t['text']:.2f}x"
        print(f"| {r} | {setups[r]:.1f} | {len(images) / t['photo']:.1f} | "
              f"{base['photo'] / t['photo']:.2f}x | {text} |")
    z = out[runtimes[-1]]
    for r in runtimes[:-1]:
        a = out[r]
        text = "" if a[1] is None else f", text features {smallest_cosine(a[1], z[1]):.5f}"
        print(f"\nsmallest cosine {r} vs {runtimes[-1]}: pooled photo features {smallest_cosine(a[0], z[0]):.5f}{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
