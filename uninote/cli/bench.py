"""``uninote bench``: retrieval quality vs cost per dim and strategy (prints tables; not a test)."""

from __future__ import annotations

import argparse

from uninote import MATRYOSHKA_DIMS

DESCRIPTION = """\
Measure every (corpus size, dim, strategy, index) configuration: recall@10 against exact search
at the full dim, single-query latency p50/p95 at 1 thread and at all threads, batch QPS, build
time, bytes per vector, bytes read per query, and the floor - those bytes over this machine's
measured single-thread memory bandwidth - with each latency as a multiple of it.

Real embeddings (--embeddings, or --model + --corpus) are searched through the Retriever with
note -> neighbours queries (strategies exact, adaptive, ann, local, global+local). Synthetic
Matryoshka-like clustered vectors (--synthetic 10000,100000,1000000; see
uninote/index/synthetic.py for exactly how they are generated) measure how cost grows with N
(strategies exact, adaptive, ann with HNSW and IVF-PQ).

Prints a markdown table (and a scaling table for several N), writes a plotly chart (--chart) and,
with --out, a JSON list with one record per configuration.
"""

EPILOG = """\
examples:
  uninote bench --embeddings emb/fashion --out bench-real.json
  uninote bench --synthetic 10000,100000 --dims 64,128,256,768 --queries 100
  uninote bench --synthetic 1000000 --dims 64,128 --ann-dims 128 --strategies exact,ann --queries 200
  uninote bench --synthetic 10000000,1000000 --on-disk --shortlist-dim 128 --ef-search 64,128 --shortlist 50
  uninote bench --synthetic 10000000 --on-disk --shortlist-dim 64 --shortlist 10,50,100,200,400 --ceiling-only
  uninote bench --scale synthetic --synthetic 100000,1000000 --dim 64 --shortlist-dim 16 --ef-search 64
  uninote bench --scale embed --corpus ../shared/data/fashion-product-images-small --scale-notes 600
  uninote bench --embeddings emb/fashion --milvus $W/milvus.db --milvus-kinds auto,hnsw --queries 200
  uninote bench --embeddings emb/fashion-image --milvus $W/milvus.db --milvus-kinds flat --milvus-granularities image,region
"""


def _cache_dir():
    import os
    from pathlib import Path

    return Path(os.environ.get("UNINOTE_CACHE", Path.home() / ".cache/uninote")) / "bench"


def run_on_disk(args) -> int:
    from pathlib import Path

    from uninote.bench.ondisk import OnDiskBenchConfig, ceilings, markdown, run_ondisk

    cfg = OnDiskBenchConfig(sizes=args.synthetic, work=Path(args.work) if args.work else _cache_dir(),
                            dtype=args.store_dtype, shortlists=args.shortlist, shortlist_dim=args.shortlist_dim,
                            index=args.shortlist_index, ef_search=args.ef_search, nprobe=args.nprobe or [64],
                            n_queries=args.queries, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                            hnsw_storage=args.hnsw_storage, in_ram_baseline=not args.no_ram_baseline, seed=args.seed)
    if args.ceiling_only:
        print(ceilings(cfg, args.out))
        return 0
    rows = run_ondisk(cfg, args.out)
    print(markdown(rows))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.replace("_", "").split(",") if x.strip()]


def register(subparsers) -> None:
    from uninote.cli.index_cmd import add_embedding_source

    p = subparsers.add_parser("bench", help="retrieval quality vs cost per dim and strategy",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_embedding_source(p)
    p.add_argument("--synthetic", type=_ints, default=None, help="comma-separated synthetic corpus sizes")
    p.add_argument("--dims", type=_ints, default=None,
                   help=f"dims to measure (default: real, those of {','.join(map(str, MATRYOSHKA_DIMS))} below the full "
                   "dim and the full dim; synthetic 64,128,256,768)")
    p.add_argument("--strategies", default=None, help="comma-separated strategies (default: all that apply)")
    p.add_argument("--ann-dims", type=_ints, default=[128], help="synthetic: dims with HNSW/IVF-PQ indexes")
    p.add_argument("--ef-search", type=_ints, default=[16, 32, 64, 128], help="synthetic: HNSW efSearch sweep")
    p.add_argument("--nprobe", type=_ints, default=[16, 32, 64], help="synthetic: IVF-PQ nprobe sweep (empty: none)")
    p.add_argument("--ivf-rerank", type=_ints, default=[10, 20],
                   help="synthetic: IVF-PQ re-rank factor sweep (shortlist = 10 * R)")
    p.add_argument("--no-ivf-baseline", action="store_true",
                   help="synthetic: skip the pre-tuning IVF-PQ defaults (built and measured by default)")
    p.add_argument("--queries", type=int, default=100, help="queries per configuration")
    p.add_argument("--threads", type=_ints, default=None, help="thread counts (default: 1 and all cores)")
    p.add_argument("--max-gb", type=float, default=4.0, help="synthetic: cap on the largest held table (GB)")
    p.add_argument("--no-cache", action="store_true", help="synthetic: do not cache HNSW under $UNINOTE_CACHE/bench")
    p.add_argument("--on-disk", action="store_true",
                   help="synthetic: store the full-dim vectors as shards on disk (uninote.bench.ondisk) and run "
                        "adaptive search = HNSW, IVF or flat shortlist on the --shortlist-dim prefix + re-rank from the "
                        "memory maps")
    p.add_argument("--work", default=None, help="on-disk: folder for the cached shards (default $UNINOTE_CACHE/bench)")
    p.add_argument("--store-dtype", default="float16", choices=["float16", "float32"], help="on-disk: vector dtype")
    p.add_argument("--shortlist", type=_ints, default=[200], help="on-disk: shortlist sizes K' to sweep")
    p.add_argument("--shortlist-dim", type=int, default=64, help="on-disk: dim of the shortlist index")
    p.add_argument("--shortlist-index", default="hnsw", choices=["hnsw", "ivf", "flat"],
                   help="on-disk: shortlist index on the prefix (its --ef-search or --nprobe are swept)")
    p.add_argument("--hnsw-m", type=int, default=32, help="on-disk: HNSW links per vector of the shortlist index")
    p.add_argument("--ef-construction", type=int, default=100, help="on-disk: HNSW build beam of the shortlist index")
    p.add_argument("--hnsw-storage", default="float16", choices=["float32", "float16"],
                   help="on-disk: dtype of the HNSW index's copy of the prefix (float16 = faiss IndexHNSWSQ fp16: "
                        "half the bytes of float32, same recall and speed as measured)")
    p.add_argument("--ceiling-only", action="store_true",
                   help="on-disk: only the recall@10 of the exact top-K' of the --shortlist-dim prefix (what any "
                        "index on that prefix can reach at each --shortlist K'), from the truth pass; no index")
    p.add_argument("--no-ram-baseline", action="store_true",
                   help="on-disk: skip the float32-in-RAM baseline (it needs N * 768 * 4 bytes of RAM)")
    p.add_argument("--scale", choices=("embed", "i2i", "synthetic"), default=None,
                   help="the batch jobs past one machine (uninote/bench/scale.py): embed or i2i throughput without "
                        "Ray vs a 1-node and a 2-node local Ray cluster (--scale-notes notes), or the I2I table of "
                        "--synthetic sizes (exact up to --exact-max, adaptive, ann) with recall against exact")
    p.add_argument("--scale-notes", type=int, default=600, help="scale embed/i2i: notes (embed: of --corpus)")
    p.add_argument("--k", type=int, default=50, help="scale: neighbours per note")
    p.add_argument("--dim", type=int, default=64, help="scale: dim searched (synthetic: also the full dim)")
    p.add_argument("--workers", type=int, default=2, help="scale: Ray actors")
    p.add_argument("--shard-notes", type=int, default=100, help="scale embed: notes per shard")
    p.add_argument("--exact-max", type=int, default=100_000, help="scale synthetic: largest exact whole table")
    p.add_argument("--time-blocks", type=int, default=5,
                   help="scale synthetic: query blocks timed where the whole table is not computed")
    p.add_argument("--recall-sample", type=int, default=1000, help="scale synthetic: notes whose lists are checked")
    p.add_argument("--milvus", default=None, metavar="URI",
                   help="real embeddings: Milvus at URI (a server, or a Milvus Lite file *.db) against in-process FAISS "
                        "(uninote/bench/milvus.py): build time, latency p50/p95 per strategy, overlap of the lists")
    p.add_argument("--milvus-kinds", default="auto",
                   help="--milvus: comma-separated index kinds, each built on both sides (auto = flat at catalogue size)")
    p.add_argument("--milvus-granularities", default="note",
                   help="--milvus: comma-separated granularities searched (note,text,image,region; image/region: "
                        "one row per vector, grouped by note)")
    p.add_argument("--out", default=None, help="write the records as a JSON list here")
    p.add_argument("--chart", default="docs/bench_quality_vs_cost.html", help="plotly chart path ('' skips)")
    p.add_argument("--seed", type=int, default=0, help="query sampling / synthetic generation seed")
    p.set_defaults(func=run)


def run_scale(args) -> int:
    import json
    from pathlib import Path

    from uninote.bench import scale
    from uninote.errors import ConfigError

    work = Path(args.work) if args.work else _cache_dir() / "scale"
    threads = (args.threads or [2])[0]
    if args.scale == "embed":
        if not args.corpus:
            raise ConfigError("--scale embed needs --corpus (e.g. the fashion catalogue parquet)")
        rows = scale.bench_embed(work / "embed", args.corpus, args.scale_notes, args.shard_notes, threads, args.workers)
    elif args.scale == "i2i":
        rows = scale.bench_i2i_ray(work, args.scale_notes, args.dim, args.k, threads, args.workers)
    else:
        if not args.synthetic:
            raise ConfigError("--scale synthetic needs --synthetic SIZES")
        rows = scale.bench_synthetic(work, args.synthetic, args.dim, args.k, args.exact_max, args.shortlist[0],
                                     args.shortlist_dim, args.ef_search[0], args.time_blocks, args.recall_sample)
    print(scale.markdown(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
        print(f"wrote {args.out}")
    return 0


def run_milvus(args) -> int:
    import json
    from pathlib import Path

    from uninote.bench.milvus import STRATEGIES, bench_milvus, markdown
    from uninote.cli.index_cmd import load_embeddings
    from uninote.errors import ConfigError

    if not (args.embeddings or args.model):
        raise ConfigError("--milvus benchmarks real embeddings: give --embeddings DIR (or --model + --corpus)")
    strategies = [s for s in (args.strategies or ",".join(STRATEGIES)).split(",") if s]
    rows = bench_milvus(load_embeddings(args), args.milvus, kinds=[k for k in args.milvus_kinds.split(",") if k],
                        strategies=strategies, dims=args.dims, n_queries=args.queries,
                        shortlist_dim=args.shortlist_dim, seed=args.seed,
                        granularities=[g for g in args.milvus_granularities.split(",") if g])
    print(markdown(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
        print(f"wrote {args.out}")
    return 0


def run(args) -> int:
    import logging
    import os
    from pathlib import Path

    from uninote.bench import report
    from uninote.bench.machine import cpu_count, measure_bandwidth
    from uninote.bench.measure import apply_floor
    from uninote.errors import ConfigError

    # OpenMP threads that spin while waiting starve each other on a shared, oversubscribed box
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.scale:
        return run_scale(args)
    if args.milvus:
        return run_milvus(args)
    if args.synthetic is None and not (args.embeddings or args.model):
        raise ConfigError("give --synthetic SIZES, or real embeddings with --embeddings / --model + --corpus")
    if args.synthetic and args.on_disk:
        return run_on_disk(args)
    bandwidth = measure_bandwidth()
    print(f"single-thread read bandwidth: {bandwidth / 1e9:.1f} GB/s (best of numpy sum / sdot over 512 MB); "
          f"{cpu_count()} cores")
    thread_counts = args.threads or sorted({1, cpu_count()})
    strategies = [s for s in (args.strategies or "").split(",") if s]
    records = []
    if args.embeddings or args.model:
        from uninote.bench.real import REAL_STRATEGIES, run_real
        from uninote.cli.index_cmd import load_embeddings

        emb = load_embeddings(args)
        records += run_real(emb, bandwidth, dims=args.dims, strategies=tuple(strategies or REAL_STRATEGIES),
                            n_queries=args.queries, thread_counts=thread_counts, seed=args.seed)
    if args.synthetic:
        from uninote.bench.synthetic import SyntheticBenchConfig, run_synthetic

        cache = None if args.no_cache else _cache_dir()
        cfg = SyntheticBenchConfig(sizes=args.synthetic, n_queries=args.queries, thread_counts=thread_counts,
                                   ann_dims=args.ann_dims, ef_search=args.ef_search, ivf_nprobe=args.nprobe,
                                   ivf_rerank=args.ivf_rerank, ivf_baseline=not args.no_ivf_baseline,
                                   max_bytes=int(args.max_gb * 2**30), cache_dir=cache, seed=args.seed)
        if args.dims:
            cfg.dims = args.dims
        if strategies:
            cfg.strategies = strategies
        records += run_synthetic(cfg, bandwidth)
    # the machine is shared: measure again after the run and keep the best (the strictest floor)
    after = measure_bandwidth()
    print(f"bandwidth before {bandwidth / 1e9:.1f} GB/s, after {after / 1e9:.1f} GB/s; floors use the best")
    bandwidth = max(bandwidth, after)
    apply_floor(records, bandwidth)
    print(report.markdown_table(records))
    if len({r.n for r in records}) > 1:
        print("\nCost growth with N (single-thread p50):\n" + report.scaling_table(records))
    meta = {"bandwidth_gbps": bandwidth / 1e9, "cores": cpu_count()}
    if args.out:
        print(f"wrote {report.write_json(records, args.out, meta)}")
    if args.chart:
        print(f"wrote {report.write_chart(records, args.chart)}")
    return 0
