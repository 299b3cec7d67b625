"""The trainer worker against a real SQLite store: claim, run, publish, fail, recover, resume."""

import json
import random

import pytest
from PIL import Image

from annotations.store import AnnotationStore
from uninote.model.config import UniNoteConfig
from uninote.model.uninote import UniNoteModel
from uninote.worker import TrainerWorker, WorkerConfig

FAST_RL = {"steps": 6, "queries_per_step": 4, "group_size": 4, "rank_k": 3, "pool_size": 8, "policy_topk": 4,
           "refresh_every": 3, "rm_epochs": 3, "log_every": 2, "save_every": 3, "device": "cpu"}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A tiny catalogue, an SFT version registered in a SQLite store, and graded pairs."""
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cat"
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(24):
        rgb = [(200, 30, 30), (30, 30, 200), (20, 160, 20)][i % 3]
        Image.new("RGB", (32, 32), rgb).save(root / "images" / f"{i}.png")
        lines.append(json.dumps({"note_id": f"p{i}", "title": f"item {i % 3}", "images": [f"images/{i}.png"]}))
    (root / "notes.jsonl").write_text("\n".join(lines) + "\n")
    (root / "qrels.tsv").write_text("query_id\tnote_id\tgrade\n" + "".join(
        f"p{q}\tp{c}\t3\n" for q in range(24) for c in range(24) if q != c and q % 3 == c % 3))
    versions = tmp_path / "versions"
    model = UniNoteModel(UniNoteConfig(text_tower="tiny", image_tower="tiny", embed_dim=16, matryoshka_dims=[8, 16],
                                       hidden_dim=32, tiny_width=16, n_regions=2, image_size=32))
    model.save_pretrained(versions / "sft" / "model")
    (versions / "sft" / "READY").write_text("x")
    store = AnnotationStore(f"sqlite:///{tmp_path / 'a.db'}")
    from uninote.data import load_corpus

    corpus = load_corpus(root)
    store.register_notes(corpus.name, corpus.notes)
    store.register_model_version("sft", str(versions / "sft"), corpus=str(root))
    rng = random.Random(0)
    for q in range(12):
        for c in rng.sample([c for c in range(24) if c != q], 5):
            store.submit_grade("ana", f"p{q}", f"p{c}", 3 if q % 3 == c % 3 else 0)
    yield store, versions, root
    store.close()


def make_worker(store, versions, **kw):
    return TrainerWorker(store, WorkerConfig(db_url=store.url, versions_root=versions, worker_id=kw.pop("wid", "w1"),
                                             poll_seconds=0.01, heartbeat_s=0.2, eval_max_queries=10, **kw))


def test_worker_publishes_a_complete_version(world):
    store, versions, root = world
    job_id = store.enqueue_job("rl", {"base_version": "sft", "corpus": str(root), **FAST_RL})
    assert make_worker(store, versions).run(once=True) == 1
    job = store.get_job(job_id)
    assert job.status == "succeeded", job.error
    version = job.result["version"]
    folder = versions / version
    for part in ("model/config.json", "model/model.safetensors", "model/training_config.json",
                 "model/metrics.json", "embeddings/manifest.json", "index", "eval.json", "READY"):
        assert (folder / part).exists(), part
    registered = {v.version: v for v in store.list_model_versions()}[version]
    assert registered.parent == "sft" and registered.path == version  # relative to the versions root
    assert registered.corpus == str(root.resolve())  # where the corpus is, for any worker
    assert registered.metrics["reward_data"]["pairs"] == 60
    assert job.metrics["step"] == 6 and job.progress == 1.0
    timings = registered.metrics["timings"]  # each phase's seconds, for the CPU / GPU comparison
    assert set(timings) == {"rl_s", "embed_s", "index_write_s", "eval_s"}
    assert all(v >= 0 for v in timings.values()) and timings["rl_s"] > 0 and timings["embed_s"] > 0
    assert job.result["timings"] == {**timings, "register_s": job.result["timings"]["register_s"]}
    assert job.result["timings"]["register_s"] >= 0
    assert not list(versions.glob(".tmp-*"))
    loaded = UniNoteModel.from_pretrained(folder / "model")
    assert loaded.version == version
    assert make_worker(store, versions).run(once=True) == 0  # nothing left to claim


def test_worker_marks_bad_jobs_failed_and_registers_nothing(world, monkeypatch):
    store, versions, root = world
    bad = store.enqueue_job("rl", {"base_version": "nope"})
    bad_cfg = store.enqueue_job("rl", {"base_version": "sft", "corpus": str(root), "group_size": 1})
    worker = make_worker(store, versions)
    worker.run(once=True)
    worker.run(once=True)
    assert "nope" in store.get_job(bad).error
    assert "group_size" in store.get_job(bad_cfg).error
    # a crash while writing the version folder: failed, no folder, no registration
    import uninote.index

    def boom(self, directory):
        raise OSError("disk full")

    monkeypatch.setattr(uninote.index.Retriever, "save", boom)
    crash = store.enqueue_job("rl", {"base_version": "sft", "corpus": str(root), **FAST_RL})
    worker.run(once=True)
    job = store.get_job(crash)
    assert job.status == "failed" and "disk full" in job.error
    assert [v.version for v in store.list_model_versions()] == ["sft"]
    assert sorted(p.name for p in versions.iterdir()) == [".work", "sft"]


def test_worker_requeues_a_dead_workers_job_and_resumes_an_interrupted_one(world):
    store, versions, root = world
    job_id = store.enqueue_job("rl", {"base_version": "sft", "corpus": str(root), **FAST_RL})
    assert store.claim_job("dead-worker").id == job_id  # claimed, then the worker died silently
    assert make_worker(store, versions, wid="w2").run(once=True) == 0  # still fresh: not stolen
    # SIGTERM-like stop at the first step boundary: failed as interrupted, checkpoint kept
    stopping = make_worker(store, versions, wid="w3", stale_after_s=0.0)
    stopping.stop_requested.set()
    stopping.process(store.claim_job("w3") or _requeue_and_claim(store, "w3"))
    job = store.get_job(job_id)
    assert job.status == "failed" and "interrupted" in job.error
    assert list((versions / ".work").glob("rl-*/checkpoint-last/trainer_state.json"))
    # the same job queued again resumes from that checkpoint and publishes a version
    again = store.enqueue_job("rl", {"base_version": "sft", "corpus": str(root), **FAST_RL})
    make_worker(store, versions, wid="w4").run(once=True)
    done = store.get_job(again)
    assert done.status == "succeeded", done.error
    metrics = json.loads((versions / done.result["version"] / "model" / "metrics.json").read_text())
    assert metrics["history"][0]["step"] == 1 and len(metrics["history"]) == 6
    assert metrics["steps_per_second"] > 0


def test_a_worker_restarted_under_its_id_takes_back_the_job_its_last_process_held(world):
    store, versions, root = world
    job_id = store.enqueue_job("rl", {"base_version": "sft", "corpus": str(root), **FAST_RL})
    assert store.claim_job("app-worker").id == job_id  # then that process was killed mid-job
    assert make_worker(store, versions, wid="other").run(once=True) == 0  # not another worker's to take
    assert make_worker(store, versions, wid="app-worker").run(once=True) == 1
    job = store.get_job(job_id)
    assert job.status == "succeeded" and job.attempts == 2, job.error


def _requeue_and_claim(store, worker_id):
    assert store.requeue_stale_jobs(0.0)
    job = store.claim_job(worker_id)
    assert job is not None and job.attempts == 2
    return job


def test_worker_cli_once(world, capsys):
    from uninote.cli.main import main

    store, versions, root = world
    job_id = store.enqueue_job("rl", {"base_version": "sft", "corpus": str(root), "rl": FAST_RL})
    assert main(["worker", "--db", store.url, "--versions-root", str(versions), "--once",
                 "--worker-id", "cli"]) == 0
    assert "processed 1 job(s)" in capsys.readouterr().out
    job = store.get_job(job_id)
    assert job.status == "succeeded" and job.worker_id == "cli"
    assert (versions / job.result["version"] / "READY").exists()


def test_device_script_runs_the_queued_job_through_the_worker_on_a_copy(world, tmp_path):
    """scripts/device_rl_job.py: a copy of the store and version, the job claimed by a worker
    process, a registered version with its phase times; the source store is left as it was."""
    import subprocess
    import sys
    from pathlib import Path

    store, versions, root = world
    repo = Path(__file__).resolve().parents[2]
    rl = {k: v for k, v in FAST_RL.items() if k not in ("steps", "device")}
    out = tmp_path / "rl-cpu.json"
    proc = subprocess.run([sys.executable, "scripts/device_rl_job.py", "--home", str(tmp_path), "--db",
                           str(tmp_path / "a.db"), "--work", str(tmp_path / "job"), "--device", "cpu",
                           "--steps", "3", "--rl", json.dumps(rl), "--eval-queries", "5", "--out", str(out)],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["status"] == "succeeded" and result["registered"] and result["ready"]
    assert result["rl"]["steps"] == 3 and result["rl"]["device"] == "cpu"
    assert set(result["timings"]) >= {"rl_s", "embed_s", "index_write_s", "register_s"}
    assert result["claimed_to_finished_s"] > 0 and result["worker_wall_s"] > 0
    assert (tmp_path / "job" / "versions" / result["version"] / "READY").exists()
    assert [v.version for v in store.list_model_versions()] == ["sft"] and not store.list_jobs()

    bad = subprocess.run([sys.executable, "scripts/device_rl_job.py", "--home", str(tmp_path / "nowhere"),
                          "--work", str(tmp_path / "job2")], cwd=repo, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "nowhere" in bad.stderr and "annotation store" in bad.stderr
