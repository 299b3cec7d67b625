"""What the app keeps between requests stays bounded (app/limits.py): Gradio sessions, cached
gallery files, per-event analytics, and the service's map jobs. Counts, not timings."""

from __future__ import annotations

import uuid

import pytest
import requests

from conftest import PASSWORD, USERS, launch_app

from uninote.errors import ConfigError

MAX_SESSIONS = 5


@pytest.fixture(scope="module")
def bounded_app(service):
    """The app launched with a small session bound ($UNINOTE_MAX_SESSIONS)."""
    demo, url = launch_app(service, UNINOTE_USERS=USERS, UNINOTE_MAX_SESSIONS=str(MAX_SESSIONS))
    yield url, demo, service
    demo.close()


def signed_in(url: str) -> requests.Session:
    s = requests.Session()
    assert s.post(f"{url}/login", data={"username": "ann15", "password": PASSWORD}, timeout=10).ok
    return s


def explore(s: requests.Session, url: str, note_id: str, session_hash: str, dim: int = 64) -> dict:
    data = [note_id, 12, "note", dim, "note", "exact", False, 16, "note", "exact", None]
    r = s.post(f"{url}/gradio_api/run/explore_note", json={"data": data, "session_hash": session_hash},
               timeout=60)
    r.raise_for_status()
    return r.json()


def gallery_paths(answer: dict) -> list[str]:
    found = []

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("path"), str):
                found.append(x["path"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(answer["data"])
    return found


def test_sessions_beyond_the_bound_are_dropped_oldest_first(bounded_app):
    url, demo, _ = bounded_app
    s = signed_in(url)
    hashes = [uuid.uuid4().hex[:12] for _ in range(3 * MAX_SESSIONS)]
    for i, h in enumerate(hashes):
        explore(s, url, f"n{i % 30}", h)
    kept = list(demo.state_holder.session_data)
    assert len(kept) == MAX_SESSIONS
    assert kept == hashes[-MAX_SESSIONS:]


def test_thumbnails_are_served_from_their_folder_not_copied(bounded_app):
    url, demo, service = bounded_app
    s = signed_in(url)
    paths = gallery_paths(explore(s, url, "n4", uuid.uuid4().hex[:12]))
    thumbs = str(service.config.thumbs_dir.resolve())
    assert len(paths) >= 12 and all(p.startswith(thumbs) for p in paths), paths[:3]
    cached = [f for files in demo.temp_file_sets for f in files]
    assert not [f for f in cached if f.endswith(".jpg") and not f.startswith(thumbs)], cached[:3]
    r = s.get(f"{url}/gradio_api/file={paths[0]}", timeout=10)
    assert r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff"


def test_event_analytics_keep_the_newest_finished_rows(bounded_app):
    """Queued events (here the Explore upload) leave one analytics row each; trimming keeps the
    newest ``keep`` finished ones and never a row of an event still running."""
    from gradio_client import Client, handle_file

    from app.limits import trim_event_analytics

    url, demo, service = bounded_app
    c = Client(url, auth=("ann16", PASSWORD), verbose=False, download_files=False, analytics_enabled=False)
    photo = service.corpus.image_path(service.note("n2"), 0)
    try:
        for i in range(6):
            c.submit([handle_file(str(photo))], f"upload {i}", "", api_name="/neighbours_of_upload").result(timeout=60)
    finally:
        c.close()
    rows = demo._queue.event_analytics
    rows["still-running"] = {"time": 0.0, "status": "processing", "process_time": None,
                             "function": "neighbours_of_upload", "session_hash": "x"}
    finished = [k for k, r in rows.items() if r["status"] == "success"]
    assert len(finished) >= 6
    dropped = trim_event_analytics(demo._queue, keep=2)
    assert dropped == len(finished) - 2
    assert [k for k, r in rows.items() if r["status"] == "success"] == finished[-2:]
    assert "still-running" in rows
    del rows["still-running"]


def test_finished_map_jobs_are_not_kept(service):
    dims = service.dims()
    for dim in dims:
        service.precompute_umap(dim, "note")
    for job in list(service._umap_jobs.values()):
        job.join(120)
    assert all(service.umap_cached(d, "note") for d in dims)
    service.precompute_umap(dims[0], "text")  # the next request drops the finished ones
    assert set(service._umap_jobs) <= {(service.served.version, dims[0], "text")}
    for job in list(service._umap_jobs.values()):
        job.join(120)


def test_closed_pages_sessions_are_dropped_once_unused(bounded_app):
    """A page's heartbeat ends (tab closed): Gradio marks its session closed but keeps it until
    the bound pushes it out; drop_closed_sessions drops it once unused for the given age, and
    leaves open and recently used sessions alone."""
    import datetime
    import time

    from app.limits import drop_closed_sessions, start_trimming

    url, demo, _ = bounded_app
    s = signed_in(url)
    holder = demo.state_holder
    closing, open_, recent = (uuid.uuid4().hex[:12] for _ in range(3))
    for h in (closing, open_, recent):
        explore(s, url, "n3", h)
    beat = s.get(f"{url}/gradio_api/heartbeat/{closing}", stream=True, timeout=10)
    next(beat.iter_lines())  # the page is alive
    beat.close()  # ... and closed
    deadline = time.time() + 30
    while not holder.session_data[closing].is_closed and time.time() < deadline:
        time.sleep(0.1)
    assert holder.session_data[closing].is_closed
    holder.session_data[recent].is_closed = True  # closed, but used a moment ago
    later = datetime.datetime.now() + datetime.timedelta(seconds=30)
    holder.time_last_used[recent] = later - datetime.timedelta(seconds=5)
    others_closed = {h for h, x in holder.session_data.items() if x.is_closed} - {closing, recent}  # earlier clients
    assert drop_closed_sessions(holder, older_than_s=10, now=later) == 1 + len(others_closed)
    assert closing not in holder.session_data and closing not in holder.time_last_used
    assert open_ in holder.session_data and recent in holder.session_data
    # the app's trimming thread does the same on its own
    holder.time_last_used[recent] = datetime.datetime.now() - datetime.timedelta(seconds=1)
    thread = start_trimming(demo, every_s=0.05, closed_s=0.5)
    deadline = time.time() + 10
    while recent in holder.session_data and time.time() < deadline:
        time.sleep(0.05)
    assert recent not in holder.session_data and open_ in holder.session_data
    assert thread.is_alive()


def _rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc malloc, /proc")
def test_trim_malloc_hands_freed_heap_pages_back(monkeypatch):
    from app import limits

    if limits._glibc() is None:
        pytest.skip("not glibc")
    assert limits.bound_malloc(4)
    blocks = [bytearray(100_000) for _ in range(2_000)]  # 200 MB below the mmap threshold: the heap
    for b in blocks:
        b[::4096] = b"x" * len(b[::4096])  # touch every page
    keep = blocks[-1]
    del blocks  # freed, but the last block pins the top of the heap: nothing goes back by itself
    before = _rss()
    assert limits.trim_malloc()
    assert before - _rss() > 100e6
    assert len(keep) == 100_000
    monkeypatch.setenv("UNINOTE_MALLOC_ARENAS", "0")
    with pytest.raises(ConfigError, match="UNINOTE_MALLOC_ARENAS"):
        limits.bound_malloc()
