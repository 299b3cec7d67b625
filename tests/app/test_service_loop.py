"""The grade -> RL -> new version loop at the service level: the start as the tabs see it, one RL
job at a time, the worker the app runs, corpus and version folders any worker can find."""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import tiny_service_config
from uninote.errors import UniNoteError
from uninote.service import UniNoteService


def grade_some(svc: UniNoteService, users=("a", "b"), per_user: int = 12) -> None:
    for user in users:
        for _ in range(per_user):
            task = svc.next_pair(user)
            q, c = svc.note(task.query_id), svc.note(task.candidate_id)
            grade = 3 if q.meta == c.meta else (2 if q.meta["kind"] == c.meta["kind"] else 0)
            svc.grade(user, task.query_id, task.candidate_id, grade, {"task_id": task.id})


def test_tabs_say_what_the_first_run_build_waits_for_then_work(tmp_path, monkeypatch):
    """During the build nothing raises AttributeError: every call says which step is running."""
    from app.annotate import next_task, show
    from app.dashboard import refresh
    from app.trainer import worker_line
    from uninote.service import versions

    release = threading.Event()
    real = versions.make_model

    def slow_make_model(*args, **kwargs):
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(versions, "make_model", slow_make_model)
    svc = UniNoteService(tiny_service_config(tmp_path)).start(background=True)
    deadline = time.time() + 30
    while "making the model" not in svc.waiting_for() and time.time() < deadline:
        time.sleep(0.05)
    assert not svc.ready
    waiting = svc.waiting_for()
    assert waiting.startswith("The first model version is being built: step 3 of 6, making the model")
    assert svc.status.startswith("first run: step 3 of 6")
    with pytest.raises(UniNoteError, match="first model version is being built"):
        svc.next_pair("alice")
    out = show(svc, "alice", None)
    assert out[0] is None and "being built" in out[-1] and "Grading opens when it is ready" in out[-1]
    assert "The dashboard fills in when it is ready" in refresh(svc, "ndcg@10", "note")[0]
    assert "Training opens when it is ready" in worker_line(svc)
    release.set()
    assert svc.wait_ready(60)
    assert svc.waiting_for() == ""
    out = show(svc, "alice", next_task(svc, "alice"))
    assert out[0]["query_id"] and out[1] and out[-1] == ""  # the first pair, photos and all


def test_progress_reads_the_live_bar_with_percent_and_time_left():
    from tqdm.auto import tqdm

    from uninote.service.progress import BuildSteps, live_bar

    steps = BuildSteps(["a", "b"])
    steps.begin("opening")
    steps.plan(["loading", "training"], first_run=True)
    steps.begin("loading the corpus")
    steps.begin("training the default SFT model")
    with tqdm(total=200, desc="sft", mininterval=0) as bar:
        time.sleep(0.05)
        bar.update(50)
        now = steps.now()
        assert (now.step, now.steps, now.first_run) == (3, 3, True)
        assert now.bar.desc == "sft" and now.bar.fraction == pytest.approx(0.25)
        assert now.bar.eta_s > 0
        text = now.describe()
        assert text.startswith("step 3 of 3, training the default SFT model: sft 25%, about ")
        assert text.endswith(" s left")
    assert live_bar() is None  # a closed bar is not shown
    with tqdm(total=10, disable=True):
        assert live_bar() is None  # nor a disabled one


def test_a_second_rl_run_is_refused_while_one_is_queued_or_running(tmp_path):
    svc = UniNoteService(tiny_service_config(tmp_path)).start()
    with pytest.raises(UniNoteError, match="no grades collected yet"):
        svc.enqueue_rl({"steps": 2})
    grade_some(svc, per_user=2)
    first = svc.enqueue_rl({"steps": 2})
    with pytest.raises(UniNoteError, match=f"RL job {first} is already queued"):
        svc.enqueue_rl({"steps": 2})
    assert svc.store.claim_job("w").id == first
    with pytest.raises(UniNoteError, match=f"RL job {first} is already running"):
        svc.enqueue_rl({"steps": 2})
    svc.store.fail_job(first, "stopped")
    assert svc.enqueue_rl({"steps": 2}) == first + 1  # once it is over, a new run may start
    assert [j.id for j in svc.jobs()] == [first + 1, first]


def test_version_rows_are_relative_so_a_copied_home_serves(tmp_path):
    svc = UniNoteService(tiny_service_config(tmp_path)).start()
    row = svc.store.active_version()
    assert row.path == svc.served.version  # relative to the versions root
    svc.store.close()
    copied = tmp_path / "copied-home"
    shutil.copytree(svc.config.home, copied)
    shutil.rmtree(svc.config.home)  # nothing may still point at the old home
    other = UniNoteService(replace(svc.config, home=copied, db_url="").validate()).start()
    assert other.served.version == row.version and other.served.path == copied / "versions" / row.version
    assert other.neighbours("n0", k=3).version == row.version
    # rows written with absolute paths keep working
    other.store.register_model_version(row.version, str(copied / "versions" / row.version))
    assert other._version_path(row.version) == copied / "versions" / row.version


def test_a_worker_started_with_only_db_finds_the_corpus_and_versions(tmp_path, monkeypatch):
    """The app's corpus given as a relative path, the worker run from another folder with only
    --db: the version records where the corpus is, the worker finds versions beside the store."""
    from uninote.cli.main import main

    cfg = tiny_service_config(tmp_path)
    monkeypatch.chdir(Path(cfg.corpus).parent)
    svc = UniNoteService(replace(cfg, corpus=Path(cfg.corpus).name)).start()  # "corpus", relative
    assert svc.store.active_version().corpus == str(Path(cfg.corpus).resolve())
    grade_some(svc)
    job_id = svc.enqueue_rl({"steps": 3})
    assert svc.jobs()[0].params["corpus"] == str(Path(cfg.corpus).resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("UNINOTE_HOME", str(tmp_path / "not-the-app-home"))
    assert main(["worker", "--db", svc.config.db_url, "--once", "--device", "cpu"]) == 0
    job = svc.store.get_job(job_id)
    assert job.status == "succeeded", job.error
    new = {v.version: v for v in svc.versions()}[job.result["version"]]
    assert new.path == new.version and new.corpus == str(Path(cfg.corpus).resolve())
    assert (svc.config.versions_root / new.version / "READY").exists()
    svc.activate(new.version)
    assert svc.neighbours("n0", k=3).version == new.version


def test_the_service_runs_a_supervised_worker_that_trains_queued_runs(tmp_path):
    svc = UniNoteService(replace(tiny_service_config(tmp_path), worker=True, worker_device="cpu")).start()
    try:
        assert svc.worker is not None
        deadline = time.time() + 60
        while not svc.worker.running and time.time() < deadline:
            time.sleep(0.1)
        first_pid = svc.worker.pid
        assert first_pid and "running" in svc.worker.describe()
        os.kill(first_pid, 9)  # it dies: the supervisor starts another
        deadline = time.time() + 60
        while (svc.worker.pid in (None, first_pid)) and time.time() < deadline:
            time.sleep(0.1)
        assert svc.worker.pid not in (None, first_pid) and svc.worker.restarts == 1
        grade_some(svc)
        job_id = svc.enqueue_rl({"steps": 3})
        deadline = time.time() + 240
        while svc.store.get_job(job_id).status in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
        job = svc.store.get_job(job_id)
        assert job.status == "succeeded", job.error
        assert job.worker_id == svc.worker.worker_id
    finally:
        pid = svc.worker.pid if svc.worker else None
        svc.close()
    assert svc.worker.pid is None and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped with the service, not left behind


def test_worker_hint_is_the_full_command(tmp_path):
    svc = UniNoteService(tiny_service_config(tmp_path)).start()
    hint = svc.worker_hint()
    assert hint == f"uninote worker --db {svc.config.db_url} --versions-root {svc.config.versions_root}"
