"""``uninote embed``: write the NoteEmbeddings of a corpus for a model or a baseline."""

from __future__ import annotations

from uninote.cli.main import add_ray, add_runtime


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "embed", help="embed a corpus (every granularity, full dim) with a model or baseline",
        description="Embed every note of a corpus at every granularity (note, text, image, region) "
        "and write uninote.embeddings.NoteEmbeddings to --out as shards of --shard-notes notes "
        "(.npy matrices, opened memory-mapped; see uninote/embedding_store.py). Shards are written "
        "one at a time, so memory does not grow with the corpus; re-running with the same --out "
        "after an interruption resumes at the first missing shard. Frozen-backbone models reuse "
        "the backbone feature cache, so re-embedding after training takes seconds. With --ray, "
        "Ray Data hands the shards to a pool of --workers actors on a running Ray cluster (one GPU "
        "each when the cluster has GPUs, else CPU with ONNX Runtime) and the same folder is written; "
        "--out and the corpus must be on storage every node reads.")
    p.add_argument("--model", help="checkpoint folder, Hub id, or baseline:text | baseline:image | baseline:concat")
    p.add_argument("--corpus", help="corpus (native folder or any load_corpus source)")
    p.add_argument("--out", help="output folder for the embeddings")
    p.add_argument("--batch-size", type=int, default=256, help="notes per forward pass")
    p.add_argument("--shard-notes", type=int, default=100_000, help="notes per shard on disk")
    p.add_argument("--dtype", default="float16",
                   help="storage dtype: float16 (default; within 0.001 ndcg@10 of float32 on fashion-test) "
                        "or float32 for every granularity, or per granularity, e.g. note=float32,region=float16")
    p.add_argument("--no-regions", action="store_true",
                   help="store no region vectors (they cost 9 per photo; local search then has none)")
    p.add_argument("--migrate", metavar="DIR", default=None,
                   help="rewrite an embeddings folder of the older single-file format (embeddings.safetensors) "
                        "as shards in place, then exit (no model or corpus needed)")
    p.add_argument("--threads", type=int, default=2, help="torch (and ONNX Runtime) CPU threads (per worker with --ray)")
    add_runtime(p)
    add_ray(p, "embedding actors (default: one per GPU of the cluster, else one per CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def parse_dtypes(text: str) -> dict[str, str] | str:
    """``float16`` or ``note=float32,region=float16`` (validated by ``storage_dtypes``)."""
    if "=" not in text:
        return text
    return dict(part.split("=", 1) for part in text.split(",") if part.strip())


def migrate(directory: str, dtypes) -> int:
    import shutil
    from pathlib import Path

    from uninote.embedding_store import is_sharded
    from uninote.embeddings import NoteEmbeddings

    d = Path(directory)
    if is_sharded(d):
        print(f"{d}: already sharded")
        return 0
    emb = NoteEmbeddings.load(d)
    tmp = d.with_name(f".{d.name}.migrating")
    emb.save(tmp, dtypes=dtypes)
    old = d.with_name(f".{d.name}.old")
    d.rename(old)
    tmp.rename(d)
    shutil.rmtree(old)
    print(f"{d}: rewritten as shards ({len(emb)} notes)")
    return 0


def run(args) -> int:
    import time

    import torch

    from uninote.data import load_corpus
    from uninote.embedding_store import embed_to_disk, storage_dtypes
    from uninote.embeddings import NoteEmbeddings
    from uninote.errors import ConfigError
    from uninote.model import load_model

    dtypes = storage_dtypes(parse_dtypes(args.dtype))
    if args.migrate:
        return migrate(args.migrate, dtypes)
    if not (args.model and args.corpus and args.out):
        raise ConfigError("uninote embed needs --model, --corpus and --out (or --migrate DIR)")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.ray:
        from uninote.cluster.connect import connect
        from uninote.cluster.embed import embed_on_cluster

        connect(args.ray)  # before anything is read or written: a wrong address fails in seconds
        corpus = load_corpus(args.corpus)
        ran = embed_on_cluster(args.ray, args.model, corpus, args.out, workers=args.workers, runtime=args.runtime,
                               threads=args.threads, batch_size=args.batch_size, dtypes=dtypes,
                               regions=not args.no_regions, shard_notes=args.shard_notes,
                               meta={"corpus": corpus.name, "model": str(args.model)})
        print(f"ray: {ran['shards']} shards embedded by {ran['workers']} workers "
              f"({ran['gpus_per_worker']} GPU each) in {ran['seconds']:.1f}s")
        out = args.out
    else:
        model = load_model(args.model, runtime=args.runtime)
        corpus = load_corpus(args.corpus)
        out = embed_to_disk(model, corpus, args.out, batch_size=args.batch_size, dtypes=dtypes,
                            regions=not args.no_regions, shard_notes=args.shard_notes, progress=not args.quiet,
                            meta={"corpus": corpus.name, "model": str(args.model)})
    emb = NoteEmbeddings.load(out)
    print(f"wrote {out}: {len(emb)} notes, {len(emb.image)} photos, {len(emb.region)} regions, "
          f"dim {emb.dim}, model {emb.model_version}, {time.perf_counter() - start:.1f}s")
    return 0
