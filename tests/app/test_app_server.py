"""The running server over real HTTP on loopback: served paths, concurrent annotators, app.py env."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import N_USERS, PASSWORD, free_port, make_corpus, wait_served

REPO = Path(__file__).resolve().parents[2]


def logged_in(url: str, user: str = "ann10") -> requests.Session:
    s = requests.Session()
    r = s.post(f"{url}/login", data={"username": user, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    return s


def test_login_is_required(live_app):
    url, _ = live_app
    r = requests.post(f"{url}/login", data={"username": "ann0", "password": "wrong"}, timeout=10)
    assert r.status_code >= 400
    assert requests.get(f"{url}/gradio_api/info", timeout=10).status_code in (401, 403)


@pytest.mark.parametrize("which", ["etc", "db", "weights", "embeddings", "corpus", "traversal"])
def test_files_outside_allowed_paths_are_refused(live_app, which):
    url, service = live_app
    home = service.config.home
    version = service.served.path
    target = {
        "etc": "/etc/passwd",
        "db": str(home / "annotations.db"),
        "weights": str(version / "model" / "model.safetensors"),
        "embeddings": str(version / "embeddings" / "shard-00000" / "note.npy"),
        "corpus": str(Path(service.corpus.root) / "notes.jsonl"),
        "traversal": str(service.config.thumbs_dir) + "/../annotations.db",
    }[which]
    if which != "traversal":
        assert Path(target).exists()
    r = logged_in(url).get(f"{url}/gradio_api/file={target}", timeout=10)
    assert r.status_code in (403, 404), (r.status_code, r.text[:200])
    assert b"SQLite" not in r.content and b"root:" not in r.content


def test_thumbnails_are_served(live_app):
    url, service = live_app
    thumb = service.thumbnail("n0")
    r = logged_in(url).get(f"{url}/gradio_api/file={thumb}", timeout=10)
    assert r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff"


def test_twenty_concurrent_annotators_lose_nothing(live_app):
    """20 gradio_client sessions, each its own login, grade at once through api_name endpoints."""
    from gradio_client import Client

    url, service = live_app
    rounds = 4
    users = [f"ann{i}" for i in range(N_USERS)]
    before = {u: {(j.query_id, j.candidate_id): j.grade for j in service.store.judgments(annotator=u)}
              for u in users}

    def annotate(user: str) -> list[tuple[str, str, int]]:
        client = Client(url, auth=(user, PASSWORD), verbose=False)
        done = []
        for r in range(rounds):
            task = client.predict(api_name="/next_pair")
            assert task, f"queue ran dry for {user}"
            grade = (hash(user) + r) % 4
            out = client.predict(task["query_id"], task["candidate_id"], grade, task["task_id"],
                                 api_name="/grade")
            assert out["annotator"] == user and out["grade"] == grade
            done.append((task["query_id"], task["candidate_id"], grade))
        client.close()
        return done

    with ThreadPoolExecutor(N_USERS) as pool:
        results = dict(zip(users, pool.map(annotate, users)))
    for user, done in results.items():
        rows = {(j.query_id, j.candidate_id): j.grade for j in service.store.judgments(annotator=user)}
        expected = dict(before[user])
        expected.update({(q, c): g for q, c, g in done})
        assert rows == expected, user
        assert len({(q, c) for q, c, _ in done}) == rounds  # every round got a fresh pair


def test_app_py_honours_gradio_server_env(tmp_path):
    """`python app.py` with GRADIO_SERVER_NAME/PORT serves there (tiny corpus and model via env)."""
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               UNINOTE_DEMO_CORPUS=str(make_corpus(tmp_path / "corpus", n_notes=12)),
               UNINOTE_HOME=str(tmp_path / "home"), UNINOTE_MODEL="config",
               UNINOTE_MODEL_CONFIG='{"text_tower": "tiny", "image_tower": "tiny", "embed_dim": 32, '
                                    '"matryoshka_dims": [16, 32], "n_regions": 2, "image_size": 32, '
                                    '"hidden_dim": 32, "tiny_width": 16}',
               OMP_NUM_THREADS="1")
    env.pop("UNINOTE_USERS", None)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 90
        if not wait_served(f"http://127.0.0.1:{port}/", 90):
            pytest.fail("app.py did not serve on GRADIO_SERVER_PORT within 90 s")
        while time.time() < deadline and not list((tmp_path / "home").glob("versions/*/READY")):
            time.sleep(0.5)  # the first-run build finishes in the background, page already up
        assert list((tmp_path / "home").glob("versions/*/READY")), "first-run version was not built"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_trainer_enqueues_rl_run_and_switches_version_through_the_api(live_app):
    from gradio_client import Client

    from uninote.train.rl_config import RLConfig

    url, service = live_app
    service.grade("ann11", "n0", "n1", 3)  # RL needs collected grades
    client = Client(url, auth=("ann11", PASSWORD), verbose=False)
    message = client.predict(api_name="/enqueue_rl")
    assert "Queued RL job" in message
    job = service.jobs()[0]
    assert job.kind == "rl" and job.status == "queued"
    defaults = RLConfig()  # the Trainer tab's boxes start at the RL defaults
    assert job.params["base_version"] == service.served.version
    assert (job.params["steps"], job.params["learning_rate"]) == (defaults.steps, defaults.learning_rate)
    current = service.served.version
    assert "Now serving" in client.predict(current, api_name="/activate_version")
    assert "incomplete" in client.predict("no-such-version", api_name="/activate_version") or \
        "unknown" in client.predict("no-such-version", api_name="/activate_version")
    client.close()


@pytest.mark.parametrize("dim, message", [
    ("abc", "dim must be a whole number (one the model serves), got 'abc'"),
    (100, "dim 100 is not served: the model works at 16, 32, 64"),
])
def test_a_dim_the_model_does_not_serve_says_why_in_explore(live_app, dim, message):
    """The dim boxes take any value (so scripts can call Explore before the page filled them in);
    one the model cannot search is refused with the reason, in the page's message box."""
    import html

    url, _ = live_app
    data = ["n3", 12, "note", dim, "note", "exact", False, 16, "note", "exact", None]
    r = logged_in(url).post(f"{url}/gradio_api/run/explore_note", json={"data": data}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert message in html.unescape(r.json()["data"][-1])
