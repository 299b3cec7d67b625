"""The whole loop in a real browser, under the app as `make demo` starts it (`python app.py`).

Tiny towers, a 36-note corpus and a short first-run SFT, so it fits in a few minutes on a CPU:
an annotator signs in during the first-run build and every tab says what it waits for (step,
percent, time left); the pair appears without a reload; two annotators grade (the Annotate queue
and the same Explore pair, so agreement shows); the Trainer starts an RL run (a double click
queues one job); the worker the app started trains it; the new version is served and Explore
answers with it. No other command runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.browser import captions, login, open_tab, pick_dropdown
from conftest import PASSWORD, free_port, make_corpus, wait_served

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60_000
PAIR_SHOWN = "#tab-annotate .un-card .un-id"  # an Annotate pair is on screen
LOOP_BUDGET_S = 900  # sign-in to a search answered by the RL version (about 3 min on 2 loaded cores)
TINY = {"text_tower": "tiny", "image_tower": "tiny", "embed_dim": 32, "matryoshka_dims": [16, 32],
        "n_regions": 2, "image_size": 32, "hidden_dim": 32}
# First-run SFT on the tiny towers, long enough (about a minute) to be seen while it runs.
SFT = {**TINY, "epochs": 120, "batch_size": 4, "num_workers": 0, "device": "cpu", "feature_threads": 1}


@pytest.fixture
def demo_app(tmp_path):
    """`python app.py` with the demo's environment (two logins, the app's own worker on)."""
    port = free_port()
    home = tmp_path / "home"
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               UNINOTE_DEMO_CORPUS=str(make_corpus(tmp_path / "corpus")), UNINOTE_HOME=str(home),
               UNINOTE_CACHE=str(tmp_path / "cache"), UNINOTE_MODEL="default",
               UNINOTE_SFT_OVERRIDES=json.dumps(SFT), UNINOTE_USERS=f"ana:{PASSWORD},ben:{PASSWORD}",
               UNINOTE_WORKER_DEVICE="cpu", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for key in ("UNINOTE_DB", "UNINOTE_WORKER", "UNINOTE_ADMINS"):
        env.pop(key, None)  # the demo's defaults: the database under UNINOTE_HOME, worker on
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_served(f"{url}/", 300):
            pytest.fail("app.py did not serve within 300 s:\n" + (tmp_path / "app.log").read_text()[-3000:])
        yield url, home, proc, tmp_path / "app.log"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def sign_in(browser, url: str, user: str):
    """Signed in as soon as the page is up, build or not."""
    return login(browser, url, user, PASSWORD, TIMEOUT, ready="#service-status")


def grade_in_annotate(page, n: int) -> None:
    open_tab(page, "Annotate")
    for i in range(n):
        page.wait_for_selector(PAIR_SHOWN)  # the query's card: a text-only query has no photo
        page.locator("body").click(position={"x": 5, "y": 5})
        # look at the pair as a person would: a key sooner than min_view_s (0.4 s) after the pair was
        # shown, or within 600 ms of the last key, is a double press that the app refuses
        page.wait_for_timeout(700)
        page.keyboard.press(str(i % 4))
        page.wait_for_function("(n) => document.querySelector('#annotate-progress')?.innerText"
                               ".includes(`· ${n} graded`)", arg=i + 1)


def worker_pids(app_pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(app_pid)], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "uninote.cli.main worker" in line]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_grade_train_serve_loop_under_the_demo_app(browser, demo_app):
    from annotations.store import AnnotationStore

    url, home, proc, log = demo_app
    t0 = time.perf_counter()

    # 1. Signed in during the first-run build: each tab says what it waits for, with progress.
    ana = sign_in(browser, url, "ana")
    ana.wait_for_function("/The first model version is being built: step 3 of 6, training the default SFT "
                          "model: sft \\d+%, about .* left\\. Search opens when it is ready/"
                          ".test(document.querySelector('#explore-message')?.innerText)")
    seen_during_build = ana.inner_text("#explore-message")
    open_tab(ana, "Annotate")
    ana.wait_for_selector("#annotate-message:has-text('Grading opens when it is ready')")
    assert "The first model version is being built: step" in ana.inner_text("#annotate-message")
    open_tab(ana, "Trainer")
    ana.wait_for_selector("#trainer-worker:has-text('Training opens when it is ready')")
    open_tab(ana, "Annotate")
    assert "Error" not in ana.inner_text("#tab-annotate")
    # ... and the first pair appears when the version is ready, without a reload
    ana.wait_for_selector(PAIR_SHOWN, timeout=300_000)
    built_s = time.perf_counter() - t0
    assert ana.inner_text("#annotate-message").strip() == ""
    app_log = log.read_text()
    assert "AttributeError" not in app_log and "Traceback" not in app_log

    # 2. Two annotators grade: from the queue, and the same pair from Explore (agreement).
    ben = sign_in(browser, url, "ben")
    grade_in_annotate(ana, 6)
    grade_in_annotate(ben, 6)
    for page, grade in ((ana, 3), (ben, 3)):
        open_tab(page, "Explore")
        page.fill("#explore-id textarea, #explore-id input", "n0")
        page.click("#explore-open")
        page.wait_for_selector("#results-a .caption-label")
        page.click(f"#explore-grade-{grade}")
        page.wait_for_selector("text=Saved grade 3 for n0")
    open_tab(ben, "Dashboard")
    ben.click("#dashboard-refresh")
    head = ben.wait_for_selector("#dashboard-head:has-text('exact agreement on')").inner_text()
    assert "by 2 annotators" in head and "graded by 2+ annotators" in head

    # 3. The Trainer starts a run; a double click queues one job, not two.
    open_tab(ana, "Trainer")
    ana.wait_for_selector("#trainer-worker:has-text(\"the app's own trainer worker (running\")")
    assert "uninote worker --db sqlite:///" in ana.inner_text("#trainer-worker")
    ana.fill("#trainer-steps input", "3")
    ana.keyboard.press("Tab")
    ana.wait_for_timeout(500)
    ana.dblclick("#trainer-enqueue")
    ana.wait_for_selector("#trainer-message:has-text('RL job 1')")
    ana.wait_for_timeout(1000)
    ana.click("#trainer-enqueue")
    ana.wait_for_selector("#trainer-message:has-text('already')")
    with AnnotationStore(f"sqlite:///{home / 'annotations.db'}") as store:
        jobs = store.list_jobs()
        assert [(j.id, j.kind) for j in jobs] == [(1, "rl")] and jobs[0].params["steps"] == 3
        base = store.active_version().version

    # 4. The worker the app started trains it; the jobs table follows it to the end.
    ana.wait_for_selector("#trainer-jobs:has-text('succeeded')", timeout=600_000)
    with AnnotationStore(f"sqlite:///{home / 'annotations.db'}") as store:
        job = store.get_job(1)
        assert job.status == "succeeded", job.error
        assert job.worker_id.startswith("app-")
        new = job.result["version"]
        row = {v.version: v for v in store.list_model_versions()}[new]
        assert row.parent == base and row.path == new and Path(row.corpus).is_absolute()
    ana.wait_for_selector(f"#trainer-versions:has-text('{new}')")
    trained_s = time.perf_counter() - t0

    # 5. Serve it and Explore answers with it.
    pick_dropdown(ana, "trainer-version", new)
    ana.click("#trainer-activate")
    ana.wait_for_selector(f"#trainer-message:has-text('Now serving {new}')")
    open_tab(ana, "Explore")
    ana.fill("#explore-id textarea, #explore-id input", "n1")
    ana.click("#explore-open")
    ana.wait_for_selector(f"#result-line-a:has-text('model {new}')")
    assert len(captions(ana, "#results-a")) >= 4
    total_s = time.perf_counter() - t0
    print(f"\nloop timings: build ready {built_s:.1f} s, RL version registered {trained_s:.1f} s, "
          f"served and searched {total_s:.1f} s; during the build the tab said: {seen_during_build!r}")
    assert total_s < LOOP_BUDGET_S

    # 6. The worker stops with the app.
    workers = worker_pids(proc.pid)
    assert len(workers) == 1
    ana.close()
    ben.close()
    proc.terminate()
    proc.wait(timeout=30)
    deadline = time.time() + 60
    while alive(workers[0]) and time.time() < deadline:
        time.sleep(0.2)
    assert not alive(workers[0]), "the app's worker outlived the app"
