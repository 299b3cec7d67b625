"""A tiny synthetic benchmark run writes well-formed records (schema, ranges), fast."""

import json

import numpy as np

from uninote.bench.measure import RECORD_KEYS, recall_at_k
from uninote.cli.main import main
from uninote.index.synthetic import SyntheticSpec, synthetic_vectors


def test_bench_json_schema(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--synthetic", "2000", "--dims", "64,128", "--ann-dims", "64", "--ef-search", "32",
               "--nprobe", "4", "--queries", "8", "--threads", "1", "--no-cache", "--out", str(out),
               "--chart", str(tmp_path / "chart.html")])
    assert rc == 0
    records = json.loads(out.read_text())
    types = {"n": int, "dim": int, "granularity": str, "strategy": str, "index": str, "recall@10": float,
             "p50_ms": float, "p95_ms": float, "qps": float, "bytes_per_vector": float,
             "bytes_scanned_per_query": float, "floor_ms": float, "threads": int}
    assert set(types) == set(RECORD_KEYS)
    for r in records:
        for key, t in types.items():
            assert isinstance(r[key], t), (key, r[key])
        assert 0 <= r["recall@10"] <= 1 and r["p95_ms"] >= r["p50_ms"] > 0 and r["qps"] > 0
        assert r["n"] == 2000 and r["threads"] == 1
    strategies = {(r["strategy"], r["dim"]) for r in records}
    assert {("exact", 64), ("exact", 128), ("adaptive", 128), ("ann", 64)} <= strategies
    exact = {r["dim"]: r for r in records if r["index"] == "numpy-matvec"}
    assert exact[128]["bytes_scanned_per_query"] == 2000 * 128 * 4
    assert "| N | dim | gran | strategy |" in capsys.readouterr().out
    assert (tmp_path / "chart.html").stat().st_size > 1000


def test_synthetic_prefix_is_consistent():
    spec = SyntheticSpec(300, full_dim=192, seed=3)
    full = synthetic_vectors(spec, 192)
    short = synthetic_vectors(spec, 100)
    from uninote.embeddings import truncate

    np.testing.assert_allclose(short, truncate(full, 100), atol=1e-6)
    assert np.allclose(np.linalg.norm(full, axis=1), 1, atol=1e-5)


def test_recall_at_k_reference():
    assert recall_at_k([[1, 2, 3]], [[3, 4, 5]]) == 1 / 3
    assert recall_at_k([np.array(["a", "b"])], [np.array(["b", "a"])]) == 1.0


def test_real_bench_on_small_embeddings():
    from uninote.bench.real import run_real
    from uninote.index.synthetic import synthetic_embeddings

    emb = synthetic_embeddings(150, dim=96, images=(1, 2), seed=5)
    records = run_real(emb, bandwidth=20e9, dims=[32, 96], n_queries=6, thread_counts=[1], shortlist=40,
                       shortlist_dim=32)
    got = {(r.strategy, r.dim, r.granularity) for r in records}
    assert {("exact", 32, "note"), ("exact", 96, "note"), ("adaptive", 96, "note"), ("ann", 96, "note"),
            ("local", 96, "region"), ("adaptive", 96, "region"), ("global+local", 96, "note")} <= got
    by = {(r.strategy, r.dim, r.granularity): r for r in records}
    assert by[("exact", 96, "note")].recall_at_10 == 1.0  # exact full dim is its own ground truth
    assert by[("local", 96, "region")].recall_at_10 == 1.0
    assert by[("exact", 32, "note")].bytes_scanned_per_query == 150 * 32 * 4


def test_bench_ivfpq_sweep_rows(tmp_path):
    """IVF-PQ rows: old defaults once, current defaults per nprobe x re-rank factor, each re-ranked
    at the index dim and at the held dim; an empty --ef-search skips HNSW."""
    out = tmp_path / "bench.json"
    rc = main(["bench", "--synthetic", "2000", "--dims", "64,128", "--ann-dims", "64", "--strategies", "ann",
               "--ef-search", "", "--nprobe", "2,4", "--ivf-rerank", "2,5", "--queries", "8", "--threads", "1",
               "--no-cache", "--out", str(out), "--chart", ""])
    assert rc == 0
    labels = [r["index"] for r in json.loads(out.read_text())]
    assert not any(label.startswith("hnsw") for label in labels)
    old = [label for label in labels if label.endswith("(old defaults)")]
    new = [label for label in labels if label.endswith("(defaults)")]
    assert len(old) == 2 and all("nprobe=16 R=4 " in label for label in old)
    assert len(new) == 2 * 2 * 2
    assert {label.split("rerank@")[1].split()[0] for label in new} == {"64", "128"}
    assert sum("R=5 " in label for label in new) == 4
