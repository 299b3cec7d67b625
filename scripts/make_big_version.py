"""A big app home from a real small one: the catalogue's notes repeated with new ids, jittered vectors.

Reads the active version of ``--home`` (a home the app built, e.g. ``make demo``) and its corpus,
and writes, under ``--out``:

    corpus/     notes.jsonl with ``--n`` notes: copy k of note ``id`` is ``id`` (k = 0) or ``id-k``,
                same title, metadata and photos (``images`` links to the small corpus's photos)
    home/       versions/<version>-x<n>/  model/ (copied), embeddings/ (shards, ``--dtype``),
                index/ (streamed from the shards), READY; annotations.db with it active and the
                corpus's notes registered (once: the app skips it while the corpus is unchanged)

and the corpus's lazy index (``uninote.data.lazy``, under ``$UNINOTE_CACHE/corpora/``), so the
app's first open reads no note either.

Copy k of a note gets the note's vectors plus Gaussian noise of ``--jitter`` per dim, re-normalised
(0.01 at 768-d: cosine about 0.96 to the original). Photos keep their one vector each; regions are
not written (``regions=False``: 9 vectors per photo would be 14 GB at 1M notes in float16). Every
step streams one shard of notes, so RAM stays flat whatever ``--n``.

    python scripts/make_big_version.py --home $W/bench-fashion --n 1000000 --out ~/.cache/uninote/big-1m
    python scripts/bench_app.py --home ~/.cache/uninote/big-1m/home --corpus ~/.cache/uninote/big-1m/corpus
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from annotations.store import AnnotationStore
from uninote.data import load_corpus
from uninote.embedding_store import EmbeddingWriter
from uninote.embeddings import NoteEmbeddings, l2_normalize
from uninote.index import Retriever
from uninote.service import ServiceConfig
from uninote.service.folders import resolve_path


def copy_id(note_id: str, k: int) -> str:
    return note_id if k == 0 else f"{note_id}-{k}"


def write_corpus(small, n: int, out: Path) -> None:
    """notes.jsonl of ``n`` notes (the small corpus repeated), photos linked from the small corpus."""
    out.mkdir(parents=True, exist_ok=True)
    images = Path(small.root) / "images"
    if images.is_dir() and not (out / "images").exists():
        os.symlink(images.resolve(), out / "images")
    lines = [json.dumps(note.to_json(), ensure_ascii=False) for note in small.notes]
    with open(out / "notes.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            k, j = divmod(i, len(small.notes))
            note = small.notes[j]
            fh.write(lines[j] if k == 0 else lines[j].replace(json.dumps(note.note_id), json.dumps(copy_id(note.note_id, k)), 1))
            fh.write("\n")


def index_and_register(corpus_dir: Path, db_url: str) -> None:
    """The lazy index of the big corpus (read as the app reads it) and its notes in the store."""
    t0 = time.perf_counter()
    corpus = load_corpus(corpus_dir, on_error="skip", lazy=True)
    print(f"  corpus index: {len(corpus):,} notes in {time.perf_counter() - t0:.0f} s", flush=True)
    with AnnotationStore(db_url) as store:
        counts = store.register_corpus(corpus.name, corpus.notes, corpus.fingerprint)
    print(f"  notes registered: {counts} in {time.perf_counter() - t0:.0f} s", flush=True)


def write_embeddings(small: NoteEmbeddings, order: list[int], n: int, out: Path, dtype: str, jitter: float,
                     shard_notes: int = 100_000) -> None:
    """Shards of ``n`` notes: note ``i`` is small row ``order[i % len(order)]`` plus noise."""
    rng = np.random.default_rng(0)
    m = len(order)
    writer = EmbeddingWriter(out, small.model_version, dtype, regions=False, meta={"repeated_from": len(small)})
    note, text = np.asarray(small.note, np.float32), np.asarray(small.text, np.float32)
    image, owner = np.asarray(small.image, np.float32), np.asarray(small.image_owner)
    photos = [np.flatnonzero(owner == r) for r in range(len(small))]
    empty = np.zeros((0, small.dim), np.float32)
    none = np.zeros(0, np.int64)
    for start in range(0, n, shard_notes):
        rows = np.array([order[i % m] for i in range(start, min(start + shard_notes, n))])
        noisy = lambda x: l2_normalize(x + jitter * rng.standard_normal(x.shape, dtype=np.float32))  # noqa: E731
        img_rows = [photos[r] for r in rows]
        img_owner = np.repeat(np.arange(len(rows)), [len(p) for p in img_rows])
        img = noisy(image[np.concatenate(img_rows)]) if len(img_owner) else empty
        ids = [copy_id(small.note_ids[r], i // m) for i, r in zip(range(start, start + len(rows)), rows)]
        writer.write(NoteEmbeddings(ids, noisy(note[rows]), noisy(text[rows]), img, img_owner, empty, none,
                                    none, small.model_version))
        print(f"  embeddings: {start + len(rows):,}/{n:,} notes", flush=True)
    writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, help="UNINOTE_HOME of the small app (its active version is repeated)")
    ap.add_argument("--corpus", default="", help="the small corpus (default: the app's default corpus)")
    ap.add_argument("--n", type=int, default=1_000_000, help="notes in the big version")
    ap.add_argument("--out", required=True, help="folder for corpus/ and home/")
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="vector storage dtype")
    ap.add_argument("--jitter", type=float, default=0.01, help="noise per dim added to each copy's vectors")
    args = ap.parse_args()
    t0 = time.perf_counter()
    os.environ["UNINOTE_HOME"] = args.home
    cfg = ServiceConfig.from_env()
    small_corpus = load_corpus(args.corpus or cfg.corpus, on_error="skip")
    with AnnotationStore(cfg.db_url) as store:
        active = store.active_version()
        if active is None:
            raise SystemExit(f"{args.home}: no active version; start the app there once first")
        folder = resolve_path(cfg.versions_root, active.path)
    small = NoteEmbeddings.load(folder / "embeddings")
    row = {nid: i for i, nid in enumerate(small.note_ids)}
    order = [row[n.note_id] for n in small_corpus.notes]  # corpus order = id order of the copies
    out = Path(args.out).expanduser()
    name = f"{active.version}-x{args.n}"
    version = out / "home" / "versions" / name
    shutil.rmtree(out / "home", ignore_errors=True)
    print(f"writing {args.n:,} notes from {len(small):,} ({active.version}) to {out}", flush=True)
    write_corpus(small_corpus, args.n, out / "corpus")
    print(f"  corpus: {time.perf_counter() - t0:.0f} s", flush=True)
    shutil.copytree(folder / "model", version / "model")
    write_embeddings(small, order, args.n, version / "embeddings", args.dtype, args.jitter)
    Retriever(NoteEmbeddings.load(version / "embeddings")).save(version / "index")
    (version / "READY").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    db_url = f"sqlite:///{out / 'home' / 'annotations.db'}"
    with AnnotationStore(db_url) as store:
        store.register_model_version(name, name, corpus=str((out / "corpus").resolve()))
        store.set_active_version(name)
    index_and_register(out / "corpus", db_url)
    print(f"done in {time.perf_counter() - t0:.0f} s: UNINOTE_HOME={out / 'home'} "
          f"UNINOTE_DEMO_CORPUS={out / 'corpus'}", flush=True)


if __name__ == "__main__":
    main()
