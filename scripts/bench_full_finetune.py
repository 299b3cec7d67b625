"""Time the full fine-tuning path (``train_sft --full-finetune``) and raw feature extraction.

    python3 scripts/bench_full_finetune.py --workers 0 4 8 --pixels uint8 float
    python3 scripts/bench_full_finetune.py --extract-corpus ~/.cache/uninote/prepared/fashion-test

Where the step's time goes: for each DataLoader worker count and pixel format it runs
``train_sft`` for --steps steps on a synthetic corpus (real EfficientNet-Lite0 weights, a random
BERT of MiniLM's shape, so no text weights need to travel to a GPU box) and prints the median
step time, how long the loop waited for batches, and how long building them took. ``float`` is the
baseline: the batch's pixels sent as float32 (four times the bytes of ``uint8``, the default).
--checkpointing on adds rows with ``--gradient-checkpointing`` (the image backbone's blocks
recomputed in the backward pass) and the peak GPU memory column shows what it saves.
--extract-corpus also times ``extract_features`` (frozen backbones, every photo and text of a
corpus) and decoding alone. On a GPU this runs bf16 autocast; on the CPU it works but is slow.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def minilm_shaped_bert(folder: Path, layers: int) -> str:
    """A random BERT with MiniLM-L6's width and depth and a small wordpiece vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    words = "red blue green black shirt shoe watch number men women navy white".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *("##" + c for c in chars)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab))
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                         intermediate_size=1536)).save_pretrained(folder)
    return str(folder)


def time_training(corpus, bert: str, work: Path, args) -> list[tuple]:
    import uninote.train.sft as sft
    from uninote.train.sft_config import SFTConfig

    stamps: list[float] = []
    step, build = torch.optim.AdamW.step, sft.RawBatches.__call__

    def timed_step(self, *a, **k):
        out = step(self, *a, **k)
        sync()
        stamps.append(time.perf_counter())
        return out

    def float_pixels(self, pairs):
        batch, idx = build(self, pairs)
        batch["pixels"] = batch["pixels"].float() / 255.0  # same values, 4x the bytes
        return batch, idx

    rows = []
    torch.optim.AdamW.step = timed_step
    try:
        for workers, pixels, recompute in itertools.product(args.workers, args.pixels, args.checkpointing):
            sft.RawBatches.__call__ = float_pixels if pixels == "float" else build
            stamps.clear()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            cfg = SFTConfig(text_tower=bert, full_finetune=True, batch_size=args.batch_size, epochs=100,
                            max_steps=args.steps, num_workers=workers, image_size=args.image_size,
                            threads=args.threads, gradient_checkpointing=recompute == "on")
            _, m = sft.train_sft(corpus, work / f"w{workers}-{pixels}-{recompute}", cfg, progress=False)
            steps_ms = [1000 * (b - a) for a, b in zip(stamps, stamps[1:])]
            peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
            rows.append((workers, pixels, recompute, m["device"], statistics.median(steps_ms), peak,
                         m["train_seconds"], m["data_wait_seconds"], m["batch_build_seconds"], m["loss_curve"][-1]))
    finally:
        torch.optim.AdamW.step, sft.RawBatches.__call__ = step, build
    return rows


def time_extraction(path: str, bert: str, batch_size: int) -> tuple:
    from uninote.data.native import load_native
    from uninote.model.config import UniNoteConfig
    from uninote.data.images import load_image
    from uninote.model.towers import load_pixels
    from uninote.model.uninote import UniNoteModel
    from uninote.model.features import extract_features

    corpus = load_native(path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = UniNoteModel(UniNoteConfig(text_tower=bert, image_tower="efficientnet-lite0")).to(device)
    model.text_tower.tower, model.image_tower.tower  # build both before the clock starts
    sync()
    t0 = time.perf_counter()
    feats = extract_features(corpus, model, batch_size=batch_size, progress=False)
    sync()
    seconds = time.perf_counter() - t0
    paths = [corpus.image_path(n, i) for n in corpus.notes for i in range(len(n.images))]
    t0 = time.perf_counter()
    for s in range(0, len(paths), batch_size):
        load_pixels([load_image(p) for p in paths[s:s + batch_size]], model.config.image_size)
    decode = time.perf_counter() - t0
    return len(corpus.notes), len(feats.image), seconds, len(paths) / decode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 4], help="DataLoader worker counts to time")
    ap.add_argument("--pixels", nargs="+", default=["uint8", "float"], choices=["uint8", "float"])
    ap.add_argument("--checkpointing", nargs="+", default=["off"], choices=["off", "on"],
                    help="train without and/or with --gradient-checkpointing")
    ap.add_argument("--steps", type=int, default=10, help="training steps per setting (the first is not timed)")
    ap.add_argument("--batch-size", type=int, default=64, help="pairs per step")
    ap.add_argument("--notes", type=int, default=512, help="synthetic corpus size")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=8, help="torch CPU threads of the training process")
    ap.add_argument("--bert-layers", type=int, default=6, help="layers of the random MiniLM-shaped text tower")
    ap.add_argument("--extract-corpus", help="native corpus folder to time extract_features on")
    ap.add_argument("--extract-batch", type=int, default=256)
    args = ap.parse_args()

    from uninote.data.native import load_native
    from uninote.model.testing import make_synthetic_corpus

    work = Path(tempfile.mkdtemp(prefix="bench-ff-"))
    bert = minilm_shaped_bert(work / "bert", args.bert_layers)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"device: {name}, torch {torch.__version__}, batch {args.batch_size} pairs, {args.image_size} px")
    if args.workers:
        corpus = load_native(make_synthetic_corpus(work / "corpus", n_notes=args.notes, text_only=8, multi_image=32))
        print("| workers | pixels | checkpointing | device | median ms/step | peak GPU GiB | train s "
              "| waited for batches s | building batches s | last loss |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for w, px, ck, dev, ms, peak, train, wait, build, loss in time_training(corpus, bert, work, args):
            print(f"| {w} | {px} | {ck} | {dev} | {ms:.0f} | {peak:.2f} | {train:.2f} | {wait:.2f} | {build:.2f} "
                  f"| {loss:.4f} |")
    if args.extract_corpus:
        notes, photos, seconds, decode = time_extraction(args.extract_corpus, bert, args.extract_batch)
        print(f"\nextract_features: {notes} notes, {photos} photos in {seconds:.2f} s = {notes / seconds:.1f} notes/s; "
              f"decoding + resizing alone: {decode:.0f} photos/s")


if __name__ == "__main__":
    main()
