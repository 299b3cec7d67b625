"""``uninote i2i``: every note's top-k neighbours (the I2I table a recommender reads), as Parquet."""

from __future__ import annotations

import argparse

from uninote.cli.main import add_ray

DESCRIPTION = """\
Compute every note's k nearest notes (note granularity, note queries) from an embeddings folder
written by `uninote embed`, excluding the note itself and its exact duplicates exactly as
Retriever.search does, and write them to --out as Parquet (one part file per query block:
note_id, neighbour_ids, scores; the settings and model version in the file metadata).

Strategies: exact (every note scored at --dim), adaptive (an exact shortlist of --shortlist
notes at --shortlist-dim, re-ranked at --dim), ann (an HNSW/IVF-PQ index at --dim when the
corpus is above the flat limit, else exact). Without --ray the job runs here, streaming query
blocks over the shards (the index at --dim is held in RAM: notes x dim x 4 bytes). With --ray
the shards are held by --workers actors of a running Ray cluster; the lists are the same for
exact and adaptive. Re-running with the same --out computes only the missing blocks.
"""

EPILOG = """\
examples:
  uninote i2i --embeddings emb/fashion --out i2i/fashion --k 50 --dim 64
  uninote i2i --embeddings emb/big --out i2i/big --strategy ann --ray 10.0.0.1:6379 --workers 16
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("i2i", help="every note's top-k neighbours, written as Parquet",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embeddings", required=True, help="embeddings folder (uninote embed --out)")
    p.add_argument("--out", required=True, help="output folder (a Parquet dataset of part files)")
    p.add_argument("--k", type=int, default=50, help="neighbours per note (default: 50)")
    p.add_argument("--dim", type=int, default=64, help="Matryoshka dim scored (default: 64)")
    p.add_argument("--strategy", choices=("exact", "adaptive", "ann"), default="exact",
                   help="exact | adaptive | ann (default: exact)")
    p.add_argument("--shortlist", type=int, default=200, help="adaptive: shortlist length (default: 200)")
    p.add_argument("--shortlist-dim", type=int, default=64,
                   help="adaptive: dim of the shortlist pass, below --dim (default: 64)")
    p.add_argument("--query-block", type=int, default=1024, help="notes per query block and part file (default: 1024)")
    p.add_argument("--index-kind", choices=("auto", "flat", "hnsw", "ivfpq"), default="auto",
                   help="ann: index kind (default: auto, by note count as the Retriever picks it)")
    p.add_argument("--ef-search", type=int, default=64, help="ann, HNSW: query beam width (default: 64)")
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS/faiss threads (default: all cores here; 1 per worker with --ray)")
    add_ray(p, "index actors holding the shards (default: one per CPU of the cluster)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from uninote.index.i2i import I2ISettings

    settings = I2ISettings(k=args.k, dim=args.dim, strategy=args.strategy, shortlist=args.shortlist,
                           shortlist_dim=args.shortlist_dim, query_block=args.query_block,
                           index={"kind": args.index_kind, "ef_search": args.ef_search}).validate()
    if args.ray:
        from uninote.cluster.connect import connect
        from uninote.cluster.i2i import i2i_on_cluster

        connect(args.ray)  # before the output folder is made: a wrong address fails in seconds
        ran = i2i_on_cluster(args.ray, args.embeddings, args.out, settings, workers=args.workers,
                             threads=args.threads or 1, progress=not args.quiet)
    else:
        from threadpoolctl import threadpool_limits

        from uninote.index.i2i_table import i2i_local

        with threadpool_limits(args.threads):
            ran = i2i_local(args.embeddings, args.out, settings, progress=not args.quiet)
    print(f"wrote {args.out}: {ran['notes']} notes, {ran['blocks']} blocks computed now, "
          f"index {ran['build_s']:.1f}s, search {ran['search_s']:.1f}s"
          + (f", {ran['workers']} workers" if "workers" in ran else ""))
    return 0
