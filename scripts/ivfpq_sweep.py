"""IVF-PQ knob sweep on the synthetic Matryoshka-like set (docs/results/index.md, "IVF-PQ").

Same-dim recall@10 (exact search at d=128 is the truth), single-query latency with the exact
re-rank at d=128, and how much of the truth the PQ shortlist covers, for builds given as
``nlist,pq_m,train_points`` arguments (mirrors ``uninote.index.ann.build_ann``: flat IP coarse
quantizer, 8-bit codes, 10 PQ k-means iterations, training sample drawn with seed 0).

    OMP_NUM_THREADS=1 NPROBE=16,32,64,128 RS=4,10,20 python scripts/ivfpq_sweep.py 4000,16,20000 8192,16,160000

Env: N (corpus size, default 1M), NPROBE, RS (re-rank factors). The corpus, queries and truth are
cached under ~/.cache/uninote/bench/ivfsweep-n<N>.
"""

import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import faiss  # noqa: E402

from uninote.bench import searchers as S  # noqa: E402
from uninote.bench.machine import threads  # noqa: E402
from uninote.embeddings import truncate  # noqa: E402
from uninote.index.synthetic import SyntheticSpec, synthetic_vectors  # noqa: E402

D, NQ, K = 128, 200, 10


def _ints(name: str, default: str) -> list[int]:
    return [int(v) for v in os.environ.get(name, default).split(",")]


def load_data(n: int):
    """(corpus at d=128, queries at d=128, exact same-dim top-10), cached on disk."""
    cache = Path(os.path.expanduser(f"~/.cache/uninote/bench/ivfsweep-n{n}"))
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "x.npy").exists():
        spec = SyntheticSpec(n, full_dim=768, seed=0)
        with threads(2):
            x = synthetic_vectors(spec, D)
            q = truncate(synthetic_vectors(spec, 768, "query", NQ), D)
            truth = S.NumpyExact(x, q).batch()
        for name, arr in (("x", x), ("q", q), ("truth", truth)):
            np.save(cache / f"{name}.npy", arr)
    return tuple(np.load(cache / f"{name}.npy") for name in ("x", "q", "truth"))


def build(x: np.ndarray, nlist: int, m: int, train_n: int):
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(D), D, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 0
    index.pq.cp.seed = 0
    index.pq.cp.niter = 10
    rng = np.random.default_rng(0)
    t = time.time()
    with threads(2):
        index.train(x[rng.choice(len(x), min(len(x), train_n), replace=False)])
        train_s = time.time() - t
        index.add(x)
    return index, train_s, time.time() - t


def overlap(rows, truth) -> float:
    return float(np.mean([len(set(r[:K]) & set(t[:K])) / K for r, t in zip(rows, truth)]))


def measure(index, x, q, truth, factor: int) -> str:
    """Recall, shortlist coverage, p50 and single-query QPS at one re-rank factor (1 thread)."""
    lat, out = [], []
    for i in range(len(q)):
        t0 = time.perf_counter()
        rows = index.search(q[i:i + 1], K * factor)[1][0]
        rows = rows[rows >= 0]
        out.append(rows[S._topk(x[rows] @ q[i], K)])
        lat.append(time.perf_counter() - t0)
    shortlist = index.search(q, K * factor)[1]
    coverage = float(np.mean([len(set(s) & set(t)) / K for s, t in zip(shortlist, truth)]))
    return (f"R={factor}: rec={overlap(out, truth):.3f} cov={coverage:.3f} "
            f"p50={np.median(lat) * 1e3:.3f}ms qps1={len(q) / sum(lat):.0f}")


def main(argv: list[str]) -> None:
    x, q, truth = load_data(int(os.environ.get("N", 1_000_000)))
    for arg in argv:
        nlist, m, train_n = (int(v) for v in arg.split(","))
        index, train_s, build_s = build(x, nlist, m, train_n)
        print(f"== nlist={nlist} m={m} train_n={train_n} train {train_s:.1f}s build {build_s:.1f}s "
              f"B/vec={m + 8}", flush=True)
        for nprobe in _ints("NPROBE", "8,16,32,64"):
            if nprobe > nlist:
                continue
            index.nprobe = nprobe
            with threads(1):
                res = [measure(index, x, q, truth, r) for r in _ints("RS", "4,10,20,50")]
            print(f"  nprobe={nprobe}: " + " | ".join(res), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
