"""Fixtures for the app tests: a tiny native corpus, a tiny random model, a real server.

The corpus is the model package's synthetic kind x colour catalogue (a few dozen notes with
generated photos) plus metadata fields; the model is ``UniNoteConfig`` with tiny towers, so the
service starts in a few seconds. ``live_app`` launches the real Gradio app on a free loopback
port with login enabled for the test annotators.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

N_USERS = 20
PASSWORD = "pw-test"
USERS = ",".join(f"ann{i}:{PASSWORD}" for i in range(N_USERS))


def make_corpus(root: Path, n_notes: int = 36) -> Path:
    """Synthetic native corpus with kind/colour metadata (for the map's colour field)."""
    from uninote.model.testing import make_synthetic_corpus

    make_synthetic_corpus(root, n_notes=n_notes, seed=0)
    lines = []
    for line in (root / "notes.jsonl").read_text().splitlines():
        note = json.loads(line)
        colour, kind = note["title"].split()[:2]
        note["meta"] = {"kind": kind, "colour": colour}
        note["body"] = f"A {colour} {kind} photographed on a plain background."
        lines.append(json.dumps(note))
    (root / "notes.jsonl").write_text("\n".join(lines) + "\n")
    return root


def tiny_service_config(tmp: Path):
    from uninote.model.testing import tiny_config
    from uninote.service import ServiceConfig

    cfg = tiny_config(embed_dim=64, matryoshka_dims=[16, 32, 64])
    return ServiceConfig(corpus=str(make_corpus(tmp / "corpus")), home=tmp / "home", model="config",
                         model_config=cfg.to_dict()).validate()


def add_version(svc, name: str, seed: int) -> str:
    """Register another version of the service's tiny architecture (another seed), not served."""
    config = svc.config.model_config
    svc.config.model_config = dict(config, seed=seed)
    try:
        model = svc._make_model("config")
    finally:
        svc.config.model_config = config
    emb = model.embed_corpus(svc.corpus, progress=False)
    emb.model_version = name
    folder = svc.config.versions_root / name
    svc._write_version(folder, "config", model, emb)
    svc.store.register_model_version(name, str(folder), parent=svc.served.version)
    return name


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    from uninote.service import UniNoteService

    tmp = tmp_path_factory.mktemp("app")
    return UniNoteService(tiny_service_config(tmp)).start()


def wait_served(url: str, timeout_s: float) -> bool:
    """Poll ``url`` until it answers 200 (True) or ``timeout_s`` passes (False)."""
    import time

    import requests

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or busy starting
            time.sleep(0.3)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(service, **env):
    """(demo, base url) of the real app for ``service``, launched in this process on a free loopback
    port with the environment ``env`` (a value of None unsets it) in force while it is built."""
    from app.factory import build_demo, launch_settings

    saved = {name: os.environ.get(name) for name in env}
    for name, value in env.items():
        os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    try:
        demo = build_demo(service)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **launch_settings(service))
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    return demo, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def live_app(service):
    """(base_url, service) of the real app, launched in this process on loopback with login."""
    demo, url = launch_app(service, UNINOTE_USERS=USERS)
    service.evaluate_served(max_queries=20)  # the dashboard's quality chart has data
    yield url, service
    demo.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (skipped where it is not installed)."""
    from app.browser import CHROMIUM, chromium

    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (run scripts/ensure_chromium.sh as root)")
    with chromium() as b:
        yield b
