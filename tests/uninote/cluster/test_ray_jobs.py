"""embed and i2i through a real two-node Ray cluster on 127.0.0.1: the one-machine outputs, also
after an interruption and with a worker killed mid-job."""

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uninote.cli.main import main
from uninote.cluster.local import LocalCluster
from uninote.embeddings import NoteEmbeddings
from uninote.index.i2i import I2ISettings
from uninote.index.i2i_table import i2i_local, read_i2i
from uninote.index.synthetic import synthetic_embeddings

pytestmark = pytest.mark.integration
SHARED = Path(os.environ.get("UNINOTE_SHARED_DATA", Path(__file__).resolve().parents[3] / ".." / "shared" / "data"))
CATALOGUE = SHARED / "fashion-product-images-small" / "data"
FIELDS = ("note", "text", "image", "image_owner", "region", "region_owner", "region_image")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("ray-cluster")).start()
    yield c
    import ray

    if ray.is_initialized():
        ray.shutdown()
    c.stop()
    assert not c.processes()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """The first 90 notes of the fashion catalogue (a native folder) and a tiny random model."""
    from uninote.data import load_corpus
    from uninote.model.testing import tiny_config
    from uninote.model.uninote import UniNoteModel

    files = sorted(CATALOGUE.glob("*.parquet"))
    if not files:
        pytest.skip("shared fashion data not available")
    corpus = load_corpus(files[0], limit=90)
    model = UniNoteModel(tiny_config()).save_pretrained(tmp_path_factory.mktemp("model") / "tiny")
    return corpus.root, model


def _embed(catalogue, out, *extra):
    corpus, model = catalogue
    return main(["embed", "--model", str(model), "--corpus", str(corpus), "--out", str(out), "--shard-notes", "25",
                 "--batch-size", "16", "--threads", "1", "--quiet", *extra])


def _same_embeddings(a_dir, b_dir) -> None:
    a, b = NoteEmbeddings.load(a_dir, verify=True), NoteEmbeddings.load(b_dir, verify=True)
    assert a.note_ids == b.note_ids and a.model_version == b.model_version
    for f in FIELDS:
        np.testing.assert_allclose(np.asarray(getattr(a, f), np.float64), np.asarray(getattr(b, f), np.float64),
                                   atol=1e-5, err_msg=f)
    shards = [json.loads((Path(d) / "manifest.json").read_text())["shards"] for d in (a_dir, b_dir)]
    assert [s["rows"] for s in shards[0]] == [s["rows"] for s in shards[1]]


def test_embed_on_the_cluster_writes_the_one_machine_shards(cluster, catalogue, tmp_path, capsys):
    assert _embed(catalogue, tmp_path / "local") == 0
    assert _embed(catalogue, tmp_path / "ray", "--ray", cluster.address, "--workers", "2") == 0
    assert "4 shards embedded by 2 workers (0 GPU each)" in capsys.readouterr().out
    _same_embeddings(tmp_path / "local", tmp_path / "ray")
    assert not (tmp_path / "ray" / ".parts").exists()

    # an interrupted job: two shards listed, the write not closed; a re-run embeds only the rest
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "local", resumed)
    manifest = json.loads((resumed / "manifest.json").read_text())
    for s in manifest["shards"][2:]:
        shutil.rmtree(resumed / s["name"])
    (resumed / "manifest.json").write_text(json.dumps(dict(manifest, shards=manifest["shards"][:2], complete=False)))
    assert _embed(catalogue, resumed, "--ray", cluster.address, "--workers", "2") == 0
    assert "2 shards embedded by 2 workers" in capsys.readouterr().out
    _same_embeddings(tmp_path / "local", resumed)


def test_i2i_on_the_cluster_equals_one_machine(cluster, catalogue, tmp_path):
    assert _embed(catalogue, tmp_path / "emb") == 0
    common = ["i2i", "--embeddings", str(tmp_path / "emb"), "--k", "10", "--dim", "16", "--query-block", "16", "--quiet"]
    for strategy in ("exact", "adaptive"):
        extra = ["--strategy", strategy, "--shortlist", "20", "--shortlist-dim", "8"]
        assert main(common + extra + ["--out", str(tmp_path / f"local-{strategy}")]) == 0
        assert main(common + extra + ["--out", str(tmp_path / f"ray-{strategy}"), "--ray", cluster.address,
                                      "--workers", "2"]) == 0
        local, ray_out = read_i2i(tmp_path / f"local-{strategy}"), read_i2i(tmp_path / f"ray-{strategy}")
        assert len(local) == 90 and local.note_id.is_unique
        assert local.note_id.tolist() == ray_out.note_id.tolist()
        assert [list(x) for x in local.neighbour_ids] == [list(x) for x in ray_out.neighbour_ids]
        np.testing.assert_allclose(np.stack(local.scores), np.stack(ray_out.scores), atol=1e-6)


def test_a_worker_killed_mid_i2i_loses_and_duplicates_nothing(cluster, tmp_path):
    import ray

    from uninote.cluster.i2i import i2i_on_cluster

    synthetic_embeddings(4000, dim=32, images=(0, 0), seed=3).save(tmp_path / "emb", shard_notes=1000)
    settings = I2ISettings(k=10, dim=32, query_block=20)
    i2i_local(tmp_path / "emb", tmp_path / "local", settings, progress=False)
    out, killed = tmp_path / "ray", {}

    def kill_second_node_worker(servers):
        second = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "second_node" in n["Resources"])
        places = ray.get([s.where.remote() for s in servers])
        pid = next(pid for node, pid in places if node == second)

        def kill_when_started():
            deadline = time.monotonic() + 120
            while len(list(out.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            killed["parts_before"] = len(list(out.glob("part-*.parquet")))
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid

        threading.Thread(target=kill_when_started, daemon=True).start()

    ran = i2i_on_cluster(cluster.address, tmp_path / "emb", out, settings, workers=2, progress=False,
                         on_started=kill_second_node_worker)
    assert killed and killed["parts_before"] < ran["blocks"] == 200  # it died mid-job
    local, got = read_i2i(tmp_path / "local"), read_i2i(out)
    assert len(got) == 4000 and got.note_id.is_unique
    pd.testing.assert_series_equal(local.note_id, got.note_id)
    assert [list(x) for x in local.neighbour_ids] == [list(x) for x in got.neighbour_ids]
