"""``uninote index``: build, inspect and query the retrieval indexes of one model version."""

from __future__ import annotations

import argparse

from uninote import MATRYOSHKA_DIMS
from uninote.cli.main import add_runtime

DESCRIPTION = """\
Build every index of one embedding pass: one per (granularity, Matryoshka dim), all from the
full-dim vectors (truncated and re-normalised, never re-encoded). Index kinds follow corpus size
(exact flat up to 50k vectors, HNSW up to 5M, IVF-PQ beyond) unless --kind says otherwise. The
folder holds manifest.json (model version, granularity, dim, kind, count, checksums), the vectors
(safetensors) and the faiss files; loading refuses another model version and corrupted files.

With --milvus URI the indexes are Milvus collections instead (one per model version,
granularity and dim, image/region with one row per vector and the note id as a field; a Milvus
server http://host:19530 or a Milvus Lite file *.db): each is built under a temporary name and
swapped in by alias, so a failed build leaves the one in service. --out is then optional (it
still writes the local folder the re-rank reads).

Embeddings come from --model + --corpus (embedded now with the model's embed_corpus) or from
--embeddings, a folder written by `uninote embed`.
"""

EPILOG = """\
examples:
  uninote index build --model baseline:text --corpus data/fashion-test --out indexes/fashion
  uninote index build --embeddings emb/fashion --out indexes/fashion --dims 64,128,768 --kind hnsw
  uninote index build --embeddings emb/fashion --milvus http://milvus:19530 --dims 64,384
  uninote index info --index indexes/fashion
  uninote index search --index indexes/fashion --note 15970 --dim 64 --strategy adaptive
"""


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def add_embedding_source(p) -> None:
    """--model/--corpus/--embeddings, shared with `uninote bench`."""
    p.add_argument("--model", help="checkpoint folder, Hub id or baseline:text|image|concat (embeds --corpus; "
                   "with --embeddings, only checks the embeddings were written by this model)")
    p.add_argument("--corpus", help="corpus folder or any load_corpus source to embed with --model")
    p.add_argument("--embeddings", help="folder written by `uninote embed` (skips embedding)")
    add_runtime(p)


def load_embeddings(args):
    """NoteEmbeddings from --embeddings (checked against --model) or --model + --corpus."""
    from uninote.embeddings import NoteEmbeddings
    from uninote.errors import ConfigError, ModelMismatchError

    if args.embeddings:
        emb = NoteEmbeddings.load(args.embeddings)
        if args.model:
            from uninote.model import load_model

            version = load_model(args.model).version
            if version != emb.model_version:
                raise ModelMismatchError(f"{args.embeddings}: embeddings were written by model version "
                                         f"{emb.model_version!r}, --model {args.model} is {version!r}")
        return emb
    if not (args.model and args.corpus):
        raise ConfigError("give --embeddings DIR, or --model and --corpus to embed now")
    from uninote.data import load_corpus
    from uninote.model import load_model

    model = load_model(args.model, runtime=getattr(args, "runtime", None))  # None: $UNINOTE_RUNTIME
    return model.embed_corpus(load_corpus(args.corpus), progress=True)


def register(subparsers) -> None:
    p = subparsers.add_parser("index", help="build, inspect and query retrieval indexes",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="index_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="build every (granularity, dim) index into --out")
    add_embedding_source(b)
    b.add_argument("--out", default=None, help="index folder to write (required without --milvus)")
    add_milvus(b)
    b.add_argument("--dims", type=_ints, default=None, help=f"comma-separated dims (default: those of {','.join(map(str, MATRYOSHKA_DIMS))} below the full dim, "
                   "and the full dim)")
    b.add_argument("--granularities", default="note,text,image,region", help="comma-separated granularities")
    b.add_argument("--kind", choices=["auto", "flat", "hnsw", "ivfpq"], default="auto",
                   help="index kind (default: auto, by vector count); with --milvus, the kind of the Milvus "
                   "collections (image/region indexes then stay auto)")
    b.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per vector")
    b.add_argument("--ef-construction", type=int, default=40, help="HNSW build beam width")
    b.add_argument("--ef-search", type=int, default=64, help="HNSW query beam width (stored in the manifest)")
    b.set_defaults(func=run_build)
    i = sub.add_parser("info", help="print an index folder's manifest and what each granularity costs per note",
                       description="Print the indexes of an index folder and, for sharded embeddings (--embeddings, "
                       "or the embeddings/ folder next to --index in a version folder), what each granularity "
                       "costs per note: on disk, in RAM when memory-mapped (owners only; the pages searches "
                       "touch come on top, as page cache), and in RAM when held as float32 by an in-memory index.")
    i.add_argument("--index", default=None, help="index folder")
    i.add_argument("--embeddings", default=None, help="sharded embeddings folder (default: ../embeddings of --index)")
    i.set_defaults(func=run_info)
    s = sub.add_parser("search", help="neighbours of a note in an index")
    s.add_argument("--index", required=True, help="index folder")
    s.add_argument("--note", required=True, help="query note id (must be in the index)")
    s.add_argument("--k", type=int, default=10, help="neighbours to return")
    s.add_argument("--dim", type=int, default=None, help="Matryoshka dim (default: full)")
    s.add_argument("--granularity", default="note", choices=["note", "text", "image", "region"])
    s.add_argument("--strategy", default="exact", choices=["exact", "ann", "adaptive", "local", "global+local"])
    s.add_argument("--modality", default="note", choices=["note", "image", "text"])
    s.add_argument("--keep-self", action="store_true", help="keep the query and its exact duplicates")
    s.add_argument("--model-version", default=None, help="refuse the index unless built by this version")
    add_milvus(s)
    s.set_defaults(func=run_search)


def add_milvus(p) -> None:
    """--milvus/--collection, shared by `index build`, `index search` and `uninote bench`."""
    p.add_argument("--milvus", default=None, metavar="URI",
                   help="serve the indexes from Milvus at URI (http://host:19530, or a Milvus Lite file *.db)")
    p.add_argument("--collection", default="",
                   help="Milvus collection name prefix (default: derived from the model version)")


def run_build(args) -> int:
    import time

    from uninote.errors import ConfigError
    from uninote.index import IndexConfig, Retriever

    if not (args.out or args.milvus):
        raise ConfigError("give --out DIR (a local index folder) and/or --milvus URI")
    start = time.perf_counter()
    config = IndexConfig(kind=args.kind, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                         ef_search=args.ef_search)
    if args.milvus:  # checked before embedding: an unreachable URI fails in seconds
        from dataclasses import replace

        from uninote.index.milvus import connect

        config = replace(config, kind="milvus", uri=args.milvus, collection=args.collection,
                         milvus_kind=args.kind).validate()
        connect(args.milvus, config.milvus_timeout).close()
    emb = load_embeddings(args)
    retriever = Retriever(emb, config)
    try:
        retriever.build(dims=args.dims, granularities=[g for g in args.granularities.split(",") if g])
        if args.milvus:
            m = retriever.milvus
            for g, d in m.collections(args.dims or []):
                print(f"milvus {args.milvus}: {m.name(g, d)} {m.open(g, d)} {m.row_count(g, d):,} rows")
        if args.out:
            retriever.save(args.out)
    finally:
        retriever.close()
    print(f"wrote {args.out or args.milvus}: {len(retriever)} notes, model {emb.model_version}, "
          f"{time.perf_counter() - start:.1f}s")
    return run_info(argparse.Namespace(index=args.out)) if args.out else 0


def run_info(args) -> int:
    from pathlib import Path

    from uninote.errors import ConfigError
    from uninote.index.persist import read_manifest

    index = getattr(args, "index", None)
    emb_dir = getattr(args, "embeddings", None)
    if not (index or emb_dir):
        raise ConfigError("give --index DIR and/or --embeddings DIR")
    if index:
        m = read_manifest(index)
        print(f"model {m['model_version']}  full dim {m['full_dim']}  notes {m['live_notes']} "
              f"(slots {m['slots']})")
        for e in m["indexes"]:
            print(f"  {e['granularity']:<7} d={e['dim']:<4} {e['kind']:<6} {e['count']:>9,} vectors  "
                  f"checksum {e['vectors_checksum']}")
        sibling = Path(index).parent / "embeddings"
        emb_dir = emb_dir or (sibling if (sibling / "manifest.json").is_file() else None)
    if emb_dir:
        print_costs(emb_dir)
    return 0


def print_costs(directory) -> None:
    """Per granularity: vectors per note, storage dtype, bytes per note on disk and in RAM."""
    from uninote.embedding_store import costs
    from uninote.shards import read_manifest

    dim = read_manifest(directory)["meta"].get("dim", 0)
    print(f"embeddings {directory} (dim {dim}), bytes per note:")
    print(f"  {'granularity':<11} {'vectors/note':>12} {'dtype':>8} {'disk':>10} "
          f"{'RAM mapped':>11} {'RAM float32':>12}")
    for g, c in costs(directory).items():
        in_ram = c["vectors_per_note"] * dim * 4 + c["ram_bytes_per_note"]
        print(f"  {g:<11} {c['vectors_per_note']:>12.2f} {c['dtype']:>8} {c['disk_bytes_per_note']:>10,.0f} "
              f"{c['ram_bytes_per_note']:>11,.0f} {in_ram:>12,.0f}")


def run_search(args) -> int:
    from uninote.index import Retriever

    r = Retriever.load(args.index, model_version=args.model_version)
    if args.milvus:
        r.use_milvus(args.milvus, args.collection)
    try:
        hits = r.search(args.note, k=args.k, dim=args.dim, granularity=args.granularity, strategy=args.strategy,
                        modality=args.modality, exclude_self=not args.keep_self)
    finally:
        r.close()
    for h in hits:
        print(f"{h.rank:>3}  {h.score:.4f}  {h.note_id}")
    return 0
