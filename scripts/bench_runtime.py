"""Corpus-embedding throughput: ``--runtime onnx`` against ``--runtime torch`` in the same run.

For each runtime, the same slice of a real corpus goes through the whole embedding pipeline with
no feature cache: photos decoded from the corpus, backbone features (text and photos), heads and
fusion, ``NoteEmbeddings`` written to disk. Setup (loading the backbones; for ONNX the export, or
the cached file, and its check against torch) is timed apart from the pipeline. The runtimes
alternate over ``--rounds`` so a change of load on a shared machine hits both; each runtime's best
round is reported. A last table gives the smallest cosine between the two runtimes' vectors per
granularity, and a decode-only pass shows what photo decoding costs by itself.

Usage:
    python scripts/bench_runtime.py --corpus ../shared/data/fashion-product-images-small --notes 512
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from uninote.data import load_corpus
from uninote.data.corpus import Corpus
from uninote.eval import evaluate
from uninote.model import UniNoteConfig, UniNoteModel, load_model
from uninote.model.features import embed_from_features, extract_features
from uninote.data.images import load_image
from uninote.model.towers import LazyTower, load_pixels

GRANULARITIES = ("note", "text", "image", "region")


def corpus_slice(corpus: Corpus, n: int) -> Corpus:
    notes = corpus.notes[:n]
    ids = {note.note_id for note in notes}
    qrels = {q: {c: g for c, g in row.items() if c in ids} for q, row in corpus.qrels.items() if q in ids}
    return Corpus(root=corpus.root, notes=notes, qrels=qrels, name=f"{corpus.name}[:{n}]")


def build(spec: str | None, runtime: str):
    model = load_model(spec, runtime=runtime) if spec else UniNoteModel(UniNoteConfig())
    model.runtime = runtime
    return model


def setup(model) -> float:
    """Seconds to load the backbones (and, for ONNX, export or open and check them)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for kind in ("text", "image"):
            tower = model.backbone(kind)
            if isinstance(tower, LazyTower):
                tower.tower  # noqa: B018  (loads the torch weights, as the ONNX check has)
    return time.perf_counter() - start


def pipeline(model, corpus: Corpus, out: Path, batch_size: int):
    """The embedding pipeline, timed: features (decode included), heads + fusion, write."""
    t0 = time.perf_counter()
    feats = extract_features(corpus, model, batch_size=batch_size, progress=False)
    t1 = time.perf_counter()
    emb = embed_from_features(model, feats, progress=False)
    t2 = time.perf_counter()
    emb.save(out)
    t3 = time.perf_counter()
    return emb, {"features": t1 - t0, "heads": t2 - t1, "write": t3 - t2, "total": t3 - t0}


def decode_only(corpus: Corpus, size: int) -> float:
    """Seconds to open every photo of the corpus and make the uint8 batch, nothing else."""
    start = time.perf_counter()
    for note in corpus.notes:
        images = [load_image(corpus.image_path(note, i)) for i in range(len(note.images))]
        if images:
            load_pixels(images, size)
    return time.perf_counter() - start


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a):
        return float("nan")
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-12)
    b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(1e-12)
    return float((a * b).sum(1).min())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="../shared/data/fashion-product-images-small",
                   help="corpus (native folder or any load_corpus source)")
    p.add_argument("--notes", type=int, default=512, help="the first N notes of the corpus")
    p.add_argument("--model", default=None, help="checkpoint folder or Hub id (default: the default config, "
                   "untrained heads: same cost)")
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime CPU threads")
    p.add_argument("--batch-size", type=int, default=64, help="texts / photos per backbone call")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds per runtime (best is kept)")
    p.add_argument("--runtimes", default="onnx,torch", help="comma-separated runtimes to compare")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    corpus = corpus_slice(load_corpus(args.corpus), args.notes)
    n_photos = sum(len(n.images) for n in corpus.notes)
    runtimes = [r for r in args.runtimes.split(",") if r]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; torch {torch.__version__}, threads {args.threads}")
    print(f"corpus: {corpus.name}: {len(corpus)} notes, {n_photos} photos; batch {args.batch_size}")
    models = {r: build(args.model, r) for r in runtimes}
    setups = {r: setup(m) for r, m in models.items()}
    size = next(iter(models.values())).config.image_size
    decode = decode_only(corpus, size)
    best, vectors, totals = {}, {}, {r: [] for r in runtimes}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for r in runtimes:
                emb, times = pipeline(models[r], corpus, Path(tmp) / f"{r}-{round_}", args.batch_size)
                print(f"round {round_ + 1} {r}: {times['total']:.1f}s", flush=True)
                vectors[r] = emb
                totals[r].append(times["total"])
                if r not in best or times["total"] < best[r]["total"]:
                    best[r] = times
    base = best[runtimes[-1]]["total"]
    if len(runtimes) > 1:
        ratios = [t / o for t, o in zip(totals[runtimes[-1]], totals[runtimes[0]])]
        print(f"per-round speed-up of {runtimes[0]} over {runtimes[-1]}: "
              f"{', '.join(f'{x:.2f}x' for x in ratios)}; of the summed rounds "
              f"{sum(totals[runtimes[-1]]) / sum(totals[runtimes[0]]):.2f}x")
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("\n| runtime | setup s | features s | heads s | write s | total s | notes/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in runtimes:
        t = best[r]
        print(f"| {r} | {setups[r]:.1f} | {t['features']:.1f} | {t['heads']:.2f} | {t['write']:.2f} | "
              f"{t['total']:.1f} | {len(corpus) / t['total']:.1f} | {base / t['total']:.2f}x |")
    print(f"\ndecoding alone (open + resize to uint8 batches): {decode:.1f}s, {n_photos / decode:.0f} photos/s")
    if len(runtimes) > 1:
        a, b = vectors[runtimes[0]], vectors[runtimes[-1]]
        print(f"\n| granularity | rows | smallest cosine {runtimes[0]} vs {runtimes[-1]} | 1 - cosine |")
        print("|---|---:|---:|---:|")
        for g in GRANULARITIES:
            cos = min_cosine(getattr(a, g), getattr(b, g))
            print(f"| {g} | {len(getattr(a, g))} | {cos:.7f} | {1 - cos:.1e} |")
        if corpus.qrels:
            ndcg_table(a, b, corpus.qrels, runtimes[0], runtimes[-1])
    return 0


def ndcg_table(a, b, qrels, name_a: str, name_b: str) -> None:
    """note -> note ndcg@10 within the slice, per Matryoshka dim, for both runtimes' vectors."""
    dims = [d for d in (64, 128, 256, 512, 768) if d <= a.dim] or [a.dim]
    ra, rb = (evaluate(e, qrels, dims=dims, modalities=["note"], granularities=["note"]) for e in (a, b))
    print(f"\n| dim | ndcg@10 {name_a} | ndcg@10 {name_b} | difference |  ({ra.n_queries} queries in the slice)")
    print("|---:|---:|---:|---:|")
    for d in dims:
        x, y = ra.get("note", "note", d), rb.get("note", "note", d)
        print(f"| {d} | {x:.4f} | {y:.4f} | {x - y:+.4f} |")


if __name__ == "__main__":
    sys.exit(main())
