"""The on-disk benchmark: shards written once and reused, shortlist + memmap re-rank, exact truth."""

import json

import numpy as np
import pytest

from uninote.bench.ondisk import OnDiskBenchConfig, rerank, run_ondisk
from uninote.cli.main import main
from uninote.index.synthetic import SyntheticSpec, synthetic_vectors
from uninote.shards import open_shards


def test_rerank_reads_the_right_rows(tmp_path):
    x = synthetic_vectors(SyntheticSpec(500, full_dim=32), 32)
    q = x[7] + 0.01
    rows = np.array([3, 7, 499, 120, -1])
    assert rerank(x, rows, q)[0] == 7 and set(rerank(x, rows, q)) == {3, 7, 499, 120}


def test_on_disk_bench_reuses_its_shards_and_finds_the_exact_neighbours(tmp_path, capsys):
    out = tmp_path / "ondisk.json"
    args = ["bench", "--synthetic", "3000", "--on-disk", "--work", str(tmp_path), "--shortlist-index", "hnsw",
            "--ef-search", "300", "--queries", "12", "--out", str(out)]
    assert main(args) == 0
    rows = json.loads(out.read_text())
    disk = [r for r in rows if r["store"] == "memmap float16"]
    assert {r["cache"] for r in disk} == {"cold", "warm"}
    assert all(r["recall@10"] >= 0.95 and r["qps"] > 0 and r["peak_anon_gb_search"] > 0 for r in rows)
    assert all(0.95 <= r["ceiling"] <= 1 for r in disk)
    assert disk[0]["disk_gb"] * 1e9 >= 3000 * 768 * 2
    folder = next(tmp_path.glob("synthetic-n3000-*"))
    assert open_shards(folder).array("note").dtype == np.float16
    assert main(args) == 0  # second run: shards, index and truth come from the cache
    again = json.loads(out.read_text())
    assert again[0]["write_s"] == 0 and again[0]["cached"] is True
    assert [r["recall@10"] for r in again] == [r["recall@10"] for r in rows]
    assert "| 3,000 | memmap float16 | hnsw-fp16@64 M=32" in capsys.readouterr().out


def test_float16_hnsw_is_its_own_cached_index_with_half_the_bytes_per_vector(tmp_path):
    import faiss

    base = dict(sizes=[3000], work=tmp_path, shortlist_dim=32, shortlists=[50], ef_search=[100], n_queries=12,
                in_ram_baseline=False, hnsw_m=16, ef_construction=40)
    flat, half = (run_ondisk(OnDiskBenchConfig(**base, hnsw_storage=s)) for s in ("float32", "float16"))
    folder = next(tmp_path.glob("synthetic-n3000-*"))
    stored = {p.name: faiss.read_index(str(p)) for p in folder.glob("hnsw-*.faiss")}
    assert sorted(stored) == ["hnsw-d32-M16-efc40-fp16.faiss", "hnsw-d32-M16-efc40.faiss"]
    assert isinstance(stored["hnsw-d32-M16-efc40-fp16.faiss"], faiss.IndexHNSWSQ)
    assert stored["hnsw-d32-M16-efc40-fp16.faiss"].storage.sa_code_size() == 32 * 2
    assert half[0]["index"].startswith("hnsw-fp16@32") and flat[0]["index"].startswith("hnsw@32")
    assert min(r["recall@10"] for r in half) >= min(r["recall@10"] for r in flat) - 0.05
    with pytest.raises(Exception, match="hnsw_storage"):
        OnDiskBenchConfig(**base, hnsw_storage="int8").validate()


def test_flat_shortlist_is_exact_at_the_prefix(tmp_path):
    cfg = OnDiskBenchConfig(sizes=[2000], work=tmp_path, index="flat", shortlists=[2000], n_queries=10)
    rows = run_ondisk(cfg)
    assert all(r["recall@10"] == 1.0 for r in rows)  # the whole corpus re-ranked at full dim


def test_exact_prefix_recall_is_what_a_flat_shortlist_finds(tmp_path):
    cfg = OnDiskBenchConfig(sizes=[3000], work=tmp_path, index="flat", shortlist_dim=8, shortlists=[10, 40],
                            n_queries=20, in_ram_baseline=False)
    rows = run_ondisk(cfg)
    by_k = {r["index"].split("K'=")[1].split()[0]: r for r in rows if r["cache"] == "warm"}
    assert by_k["10"]["ceiling"] < by_k["40"]["ceiling"] < 1  # 8 dims predict the 768-d top-10 poorly
    assert all(r["recall@10"] == r["ceiling"] for r in rows)
    cfg.shortlists = [10]  # the cached top-40 of the prefix serves a shorter shortlist: no second pass
    again = run_ondisk(cfg)
    assert again[0]["truth_s"] == 0 and again[0]["ceiling"] == by_k["10"]["ceiling"]


def test_ceiling_only_reports_what_a_flat_shortlist_finds_without_an_index(tmp_path, capsys):
    out = tmp_path / "ceiling.json"
    args = ["bench", "--synthetic", "3000", "--on-disk", "--work", str(tmp_path), "--shortlist-dim", "8",
            "--shortlist", "40,10", "--queries", "20", "--ceiling-only", "--out", str(out)]
    assert main(args) == 0
    rows = json.loads(out.read_text())
    assert [r["shortlist"] for r in rows] == [10, 40] and rows[0]["ceiling"] < rows[1]["ceiling"] < 1
    assert "| 3,000 | 8 | 10 |" in capsys.readouterr().out
    folder = next(tmp_path.glob("synthetic-n3000-*"))
    assert not list(folder.glob("*.faiss"))  # no index built
    flat = run_ondisk(OnDiskBenchConfig(sizes=[3000], work=tmp_path, index="flat", shortlist_dim=8,
                                        shortlists=[10, 40], n_queries=20, in_ram_baseline=False))
    found = {int(r["index"].split("K'=")[1].split()[0]): r["recall@10"] for r in flat}
    assert found == {r["shortlist"]: r["ceiling"] for r in rows}


def _documented_rows(spec, rows):
    """The generator as its docstring states it, written naively (one 64-column block at a time)."""
    from uninote.index.synthetic import BLOCK, STREAMS

    assign = np.random.default_rng([spec.seed, STREAMS["corpus"], 0, 10**6]).integers(0, spec.clusters, rows)
    cols = []
    for col in range(0, spec.full_dim, BLOCK):
        width = min(BLOCK, spec.full_dim - col)
        mu = np.random.default_rng([spec.seed, 9, col]).standard_normal((spec.clusters, width), np.float32)
        z = np.random.default_rng([spec.seed, 0, 0, col]).standard_normal((rows, width), np.float32)
        cols.append((mu[assign] + spec.noise * z) * spec.scale(spec.full_dim)[col:col + width])
    x = np.concatenate(cols, axis=1)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_generator_writes_the_documented_rows_in_any_dtype():
    from uninote.index.synthetic import chunk_into

    spec = SyntheticSpec(5000, full_dim=100, seed=4)
    want = _documented_rows(spec, 700)
    np.testing.assert_array_equal(chunk_into(spec, 100, 0, np.empty((700, 100), np.float32)), want)
    np.testing.assert_array_equal(chunk_into(spec, 100, 0, np.empty((700, 100), np.float16)), want.astype(np.float16))
    assert np.array_equal(synthetic_vectors(spec, 100, n=700), want)
    with pytest.raises(ValueError, match="multiple of"):
        chunk_into(spec, 100, 5, np.empty((10, 100), np.float32))


def test_parallel_shard_write_equals_the_serial_one(tmp_path):
    from uninote.bench.ondisk import AnonPeak, write_synthetic_shards

    spec = SyntheticSpec(140_000, full_dim=16, seed=2)
    sums = []
    for workers in (1, 2):
        cfg = OnDiskBenchConfig(work=tmp_path / f"w{workers}", shard_rows=65_536, full_dim=16)
        with AnonPeak() as peak:
            folder, seconds = write_synthetic_shards(cfg, spec, workers=workers)
        manifest = open_shards(folder).manifest
        assert [s["rows"]["note"] for s in manifest["shards"]] == [65_536, 65_536, 8_928] and peak.peak > 0
        sums.append([s["files"]["note.npy"]["sha256"] for s in manifest["shards"]])
    assert sums[0] == sums[1]
    x = open_shards(folder).array("note")
    np.testing.assert_array_equal(x[70_000:70_010], synthetic_vectors(spec, 16)[70_000:70_010].astype(np.float16))


def test_truth_pass_is_the_exact_top10_and_prefix_topk_across_blocks():
    from uninote.bench.ondisk import truth_pass
    from uninote.embeddings import truncate

    spec = SyntheticSpec(70_000, full_dim=24, seed=1)
    x = synthetic_vectors(spec, 24)
    q = synthetic_vectors(spec, 24, "query", 7)
    truth, prefix, _ = truth_pass(x, q, 8, prefix_k=30)
    scores = q @ x.T
    want = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(np.take_along_axis(scores, truth, 1), np.take_along_axis(scores, want, 1))
    low = truncate(q, 8) @ truncate(x, 8).T  # the prefix top-30 spans both 65,536-row blocks
    np.testing.assert_allclose(np.take_along_axis(low, prefix, 1), -np.sort(-low, axis=1)[:, :30], rtol=1e-6)


def test_ram_baseline_is_skipped_when_the_float32_table_is_too_big(tmp_path):
    cfg = OnDiskBenchConfig(sizes=[2000], work=tmp_path, index="flat", n_queries=5, ram_baseline_max_gb=0.001)
    rows = run_ondisk(cfg)
    assert {r["store"] for r in rows} == {"memmap float16"} and all(r["loadavg"] >= 0 for r in rows)


def test_rerank_reads_rows_across_shards(tmp_path):
    from uninote.shards import ShardWriter

    x = synthetic_vectors(SyntheticSpec(900, full_dim=32, seed=5), 32)
    writer = ShardWriter(tmp_path / "s", {"note": "float32"})
    for s in range(0, 900, 250):
        writer.write({"note": x[s:s + 250]})
    mapped = open_shards(writer.close()).array("note")
    rows = np.array([899, 3, 250, 249, 500, 751, -1])
    for q in (x[250], x[899] + 0.01, x[3]):
        assert list(rerank(mapped, rows, q)) == list(rerank(x, rows, q))
    assert rerank(mapped, rows, x[751])[0] == 751
