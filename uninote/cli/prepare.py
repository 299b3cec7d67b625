"""``uninote prepare``: turn any supported source into a native corpus folder."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write a corpus in UniNote's native folder format, ready for training, embedding and evaluation.

SOURCE may be:
  * a native corpus folder (has notes.jsonl),
  * the fashion product catalogue: a folder with data/*.parquet in the Hugging Face schema, one
    such parquet file, or the Hub dataset id ashraq/fashion-product-images-small,
  * a Qilin notes table (.csv or .parquet with note_title / note_content columns), or the Hub
    dataset id THUIR/Qilin (any other id with --format qilin): its notes table and image folders
    are downloaded and image paths resolve under the downloaded snapshot.

The output folder holds notes.jsonl, images/ (photos hard-linked or copied from the source),
and, when the source has relevance labels, qrels.tsv and pairs.jsonl. For the fashion catalogue
these labels come from the catalogue attributes (3: same article type and colour, 2: same article
type, 1: same sub-category, 0: otherwise). With --split, notes are split into disjoint train and
test sides (deterministic for a seed); fashion labels are re-derived within the chosen side, so
every test query's candidates are test notes.

Non-native sources are converted once and cached under $UNINOTE_CACHE/corpora (default
~/.cache/uninote), so running prepare again is fast. An existing corpus at --out is replaced
atomically; any other non-empty folder is refused.
"""

EPILOG = """\
examples:
  uninote prepare --source ../shared/data/fashion-product-images-small --split train --out data/fashion-train
  uninote prepare --source ashraq/fashion-product-images-small --limit 1000 --out /tmp/fashion-1k
  uninote prepare --source ../shared/data/qilin-toy/notes.csv --image-root /data/qilin --out /tmp/qilin
  uninote prepare --source THUIR/Qilin --limit 1000 --out /tmp/qilin-1k
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("prepare", help="write any supported source as a native corpus folder",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True,
                   help="corpus folder, parquet/csv file, or Hub dataset id (fashion catalogue or Qilin)")
    p.add_argument("--out", required=True, help="folder to write the native corpus into")
    p.add_argument("--format", choices=["native", "fashion", "qilin"], default=None,
                   help="source format (default: detected from the files)")
    p.add_argument("--split", choices=["all", "train", "test"], default="all",
                   help="write every note, or only the train or test side of the split (default: all)")
    p.add_argument("--test-fraction", type=float, default=0.3, help="share of notes in the test side (default: 0.3)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split and for label sampling (default: 0)")
    p.add_argument("--max-queries", type=int, default=500,
                   help="fashion: number of query notes sampled for qrels, per side when splitting (default: 500)")
    p.add_argument("--on-error", choices=["skip", "fail"], default="fail",
                   help="bad records: stop at the first one with its file and line (fail, default) "
                   "or skip them and warn with counts (skip)")
    p.add_argument("--limit", type=int, default=None, help="keep only the first N notes of the source")
    p.add_argument("--image-root", default=None,
                   help="Qilin: folder the table's image paths are relative to (default: the table's folder, "
                   "or the downloaded snapshot for a Hub id)")
    p.add_argument("--revision", default=None,
                   help="Hub id sources: branch, tag or commit to download (default: the main branch)")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    import time

    from uninote.data import load_corpus, split_corpus, write_corpus

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    started = time.perf_counter()
    corpus = load_corpus(args.source, format=args.format, on_error=args.on_error, limit=args.limit,
                         max_queries=args.max_queries, seed=args.seed, image_root=args.image_root, progress=True,
                         revision=args.revision)
    if args.split != "all":
        train, test = split_corpus(corpus, args.test_fraction, args.seed, args.max_queries)
        corpus = train if args.split == "train" else test
    out = write_corpus(corpus, args.out, progress=True)
    n_images = sum(len(n.images) for n in corpus.notes)
    n_judged = sum(len(row) for row in corpus.qrels.values())
    print(f"wrote {out}: {len(corpus)} notes, {n_images} images, {len(corpus.qrels)} queries "
          f"({n_judged} graded candidates), {len(corpus.pairs)} pairs "
          f"in {time.perf_counter() - started:.1f}s")
    return 0
