"""The on-disk benchmark: shards written once and reused, shortlist + memmap re-rank, exact truth."""

import json

import numpy as np

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
    assert disk[0]["disk_gb"] * 1e9 >= 3000 * 768 * 2
    folder = next(tmp_path.glob("synthetic-n3000-*"))
    assert open_shards(folder).array("note").dtype == np.float16
    assert main(args) == 0  # second run: shards, index and truth come from the cache
    again = json.loads(out.read_text())
    assert again[0]["write_s"] == 0 and again[0]["cached"] is True
    assert [r["recall@10"] for r in again] == [r["recall@10"] for r in rows]
    assert "| 3,000 | memmap float16 | hnsw@64" in capsys.readouterr().out


def test_flat_shortlist_is_exact_at_the_prefix(tmp_path):
    cfg = OnDiskBenchConfig(sizes=[2000], work=tmp_path, index="flat", shortlists=[2000], n_queries=10)
    rows = run_ondisk(cfg)
    assert all(r["recall@10"] == 1.0 for r in rows)  # the whole corpus re-ranked at full dim
