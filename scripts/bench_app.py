"""App latency and memory: cold start, Explore click-to-render, grade-to-next-pair, 20 annotators.

Starts the real app (`python app.py`, exactly what `make demo` runs) as a subprocess on a free
loopback port with test logins, then measures from outside:

- start:    seconds from process start to the page being served, and to "usable" (the
            ``/neighbours`` API answers with neighbours), for a first run (``--fresh``: an empty
            UNINOTE_HOME and an empty UNINOTE_CACHE, so no backbone features, ONNX exports or
            converted corpora are reused) and a cached run; beside each wall time, the CPU seconds
            (user + sys) of the app's process tree, children included: on a shared machine the
            wall time is set by the load, the CPU seconds by the work;
- explore:  browser click-to-render (click a neighbour in headless Chromium until the new query's
            neighbours are on screen), p50/p95;
- grade:    browser key press "2" until the next pair is shown, p50/p95;
- load:     20 gradio_client annotators grading at once, per-call p50/p95 of next_pair + grade;
- memory:   RSS of the app process (and its children) at the end; with ``--memory-minutes M``, a
            scripted session of M minutes (``memory_session``: Explore clicks at varied dims,
            granularities and strategies, side by side, page reloads, uploads, two annotators
            grading) with the RSS sampled every ``--sample-s`` seconds.

Usage:
    python scripts/bench_app.py --home /tmp/uninote-bench [--corpus PATH --note-id ID] [--fresh] [--n 30]
    python scripts/bench_app.py --home /tmp/uninote-bench --fresh --no-measure   # the cold start only
    python scripts/bench_app.py --home /tmp/uninote-bench --no-measure --memory-minutes 30 --out rss.json

A big version (``scripts/make_big_version.py``: a million notes from a small home) is measured
with ``--home <out>/home --corpus <out>/corpus --strategy adaptive --no-load``: the same start
and Explore numbers, searched with the strategy a version of that size is served with.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from app.browser import VIEWPORT, chromium, pick_dropdown  # same Chromium flags as the tests
from uninote.embeddings import NoteEmbeddings

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-pw"
USERS = [f"bench{i}" for i in range(21)]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(pct(values, 50), 1), "p95_ms": round(pct(values, 95), 1),
            "max_ms": round(max(values), 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env_extra: dict, log_path: Path, app_dir: Path = REPO):
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               UNINOTE_USERS=",".join(f"{u}:{PASSWORD}" for u in USERS), **env_extra)
    log = open(log_path, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", t0


def wait_served(url: str, t0: float, timeout: float) -> float:
    while time.perf_counter() - t0 < timeout:
        try:
            if requests.get(url, timeout=10).status_code == 200:
                return time.perf_counter() - t0
        except requests.RequestException:  # not up yet, or too busy building to answer in time
            pass
        time.sleep(0.2)
    raise TimeoutError("page never served")


def wait_usable(url: str, t0: float, timeout: float, note_id: str, strategy: str = "exact") -> float:
    """Seconds until ``/neighbours`` (the program API, full dim) answers with neighbours of ``note_id``;
    until the version is ready it answers 'not ready yet'. A note the corpus lacks fails at once."""
    s = requests.Session()
    last = ""
    while time.perf_counter() - t0 < timeout:
        try:
            if not s.cookies:
                s.post(f"{url}/login", data={"username": USERS[0], "password": PASSWORD}, timeout=30)
            r = s.post(f"{url}/gradio_api/run/neighbours", json={"data": [note_id, 12, None, "note", "note", strategy, None]},
                       timeout=60)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            data = body.get("data") if isinstance(body, dict) else None
            if r.status_code == 200 and data and data[0].get("neighbours"):
                return time.perf_counter() - t0
            last = str(body.get("error", r.status_code) if isinstance(body, dict) else r.status_code)
            if "no note with id" in last:
                raise SystemExit(f"--note-id {note_id}: {last}")
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"app never became usable (last answer: {last})")


def cpu_seconds(proc) -> dict:
    """User and system CPU seconds of ``proc`` and every process below it, finished children included."""
    user = system = 0.0
    p = psutil.Process(proc.pid)
    for q in [p] + p.children(recursive=True):
        try:
            t = q.cpu_times()
        except psutil.NoSuchProcess:
            continue
        user += t.user + t.children_user
        system += t.system + t.children_system
    return {"cpu_user_s": round(user, 1), "cpu_sys_s": round(system, 1), "cpu_s": round(user + system, 1)}


def wait_warm(home: Path, t0: float, timeout: float) -> float:
    """Background warm-up done: the default map layout is cached (thumbnails are made before it)."""
    while time.perf_counter() - t0 < timeout:
        if list(home.glob("versions/*/umap/note-*.safetensors")):
            return time.perf_counter() - t0
        time.sleep(1.0)
    raise TimeoutError("background warm-up (thumbnails, default map) never finished")


def wait_complete(home: Path, t0: float, timeout: float) -> float | None:
    """A first version built on part of a big corpus (UNINOTE_FIRST_BUILD_NOTES): seconds until its
    background completion says done (None: the version was built on the whole corpus)."""
    while time.perf_counter() - t0 < timeout:
        states = [json.loads(p.read_text()) for p in home.glob("versions/*/completion.json")]
        if not states:
            return None
        if all(s.get("done") for s in states):
            return time.perf_counter() - t0
        time.sleep(2.0)
    raise TimeoutError("the background completion never finished")


def rss_mb(proc) -> float:
    """RSS of ``proc`` (a Popen, or ``os`` for this process) and its children."""
    p = psutil.Process(proc.getpid() if proc is os else proc.pid)
    return sum(c.memory_info().rss for c in [p] + p.children(recursive=True)) / 2**20


def app_memory_mb(proc) -> dict:
    """The app process alone: RSS, and RssAnon (RSS less the pages of memory-mapped files)."""
    with open(f"/proc/{proc.pid}/status") as fh:
        status = {k: v.split()[0] for k, v in (line.split(":", 1) for line in fh) if k in ("VmRSS", "RssAnon")}
    return {"app_rss_mb": round(int(status["VmRSS"]) / 1024), "app_rss_anon_mb": round(int(status["RssAnon"]) / 1024)}


# Explore click-to-render, timed inside the page: from the click event on the i-th neighbour until
# the query card shows another note (its text, not Gradio's status line) and every result photo
# is decoded. Timed from Python around Playwright's click, it would add Playwright's own checks
# before it clicks (visible, stable over two frames, hit target), which no user's click waits for.
CLICK_TO_RENDER = """(i) => new Promise((done, fail) => {
  const card = () => (document.querySelector('#query-card .un-card') || {}).innerText;
  const old = card();
  const t0 = performance.now();
  document.querySelectorAll('#results-a .thumbnail-item')[i].click();
  (function check() {
    const now = performance.now();
    const g = [...document.querySelectorAll('#results-a img')];
    if (card() !== old && g.length > 0 && g.every(x => x.complete && x.naturalWidth > 0)) return done(now - t0);
    if (now - t0 > 60000) return fail(new Error('no new query card within 60 s'));
    requestAnimationFrame(check);
  })();
})"""


PROGRESS = "#annotate-progress [data-testid=markdown]"  # the progress text, not Gradio's status line


def browser_latencies(url: str, n: int, strategy: str = "exact", grade: bool = True) -> dict:
    with chromium() as b:
        page = b.new_page(viewport=VIEWPORT)
        page.set_default_timeout(60_000)
        page.goto(url)
        page.fill("input[type=text]", USERS[-1])
        page.fill("input[type=password]", PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_selector("#explore-catalogue img")
        if strategy != "exact":
            pick_dropdown(page, "strat-a", strategy)
        page.locator("#explore-catalogue .thumbnail-item").first.click()
        page.wait_for_selector("#results-a .caption-label")
        page.wait_for_timeout(500)
        explore = []
        for i in range(n):
            page.wait_for_timeout(200)  # the last event settled (Gradio drops a click on a busy trigger)
            explore.append(page.evaluate(CLICK_TO_RENDER, i % 3))
        outside = []  # the same click timed from Python around Playwright's click, for comparison
        for i in range(n):
            page.wait_for_timeout(200)
            card = page.inner_text("#query-card .un-card")
            t = time.perf_counter()
            page.locator("#results-a .thumbnail-item").nth(i % 3).click()
            page.wait_for_function("(old) => document.querySelector('#query-card .un-card').innerText !== old"
                                   " && [...document.querySelectorAll('#results-a img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", arg=card, polling="raf")
            outside.append((time.perf_counter() - t) * 1000)
        clicks = {"explore_click_to_render": summary(explore), "explore_click_playwright": summary(outside)}
        if not grade:
            return clicks
        page.get_by_role("tab", name="Annotate").click()
        page.wait_for_selector(f"#annotate-progress:has-text('{USERS[-1]}')")
        grade, pressed, shown = [], 0.0, time.perf_counter()
        for i in range(n):
            progress = page.inner_text(PROGRESS)
            page.locator("body").click(position={"x": 5, "y": 5})
            # not a double press: the page drops a key within GRADE_GAP_MS (600) of the last one and
            # the server refuses a grade sooner than min_view_s (0.4 s) after its pair was shown
            wait = max(pressed + 0.65, shown + 0.45) - time.perf_counter()
            if wait > 0:
                page.wait_for_timeout(wait * 1000)
            t = pressed = time.perf_counter()
            page.keyboard.press(str(i % 4))
            page.wait_for_function(f"(old) => document.querySelector('{PROGRESS}').innerText !== old"
                                   " && [...document.querySelectorAll('#annotate-candidate-photo img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)", arg=progress,
                                   polling="raf")
            shown = time.perf_counter()
            grade.append((shown - t) * 1000)
    return {**clicks, "grade_to_next_pair": summary(grade)}


def explore_http(url: str, home: Path, n: int, strategy: str = "exact") -> dict:
    """The Explore search alone over HTTP (no browser): POST /gradio_api/run/explore_note."""
    note_ids = NoteEmbeddings.load(next(home.glob("versions/*/embeddings"))).note_ids
    s = requests.Session()
    s.post(f"{url}/login", data={"username": USERS[1], "password": PASSWORD}, timeout=30).raise_for_status()
    total, inside = [], []
    for i in range(n):
        data = [note_ids[(i * 211_117) % len(note_ids)], 12, "note", 768, "note", strategy, False, 64, "note", "exact", None]
        t = time.perf_counter()
        r = s.post(f"{url}/gradio_api/run/explore_note", json={"data": data}, timeout=60)
        r.raise_for_status()
        total.append((time.perf_counter() - t) * 1000)
        inside.append(r.json().get("duration", 0.0) * 1000)
    return {"http_call": summary(total), "inside_callback": summary(inside)}


def concurrent_annotators(url: str, n_users: int = 20, rounds: int = 10, mode: str = "http") -> dict:
    """``rounds`` x (next_pair + grade) per annotator, all annotators at once; per-round latency.

    ``http``: each annotator is a logged-in HTTP session posting to Gradio's REST routes
    (``/gradio_api/run/<api_name>``) with its own page session hash, so the number is the server's;
    ``http-no-session``: the same without a session hash (a bare REST caller). ``client``: each annotator is
    a ``gradio_client.Client`` (what scripts use); its own per-call overhead (threads, SSE) is
    included and, with 20 clients in this one process, competes for the same CPU as the server.
    """
    from gradio_client import Client

    calls: list[float] = []
    lock = threading.Lock()

    def http_user(user):
        s = requests.Session()
        s.post(f"{url}/login", data={"username": user, "password": PASSWORD}, timeout=30).raise_for_status()
        # one page session per annotator, as a browser tab and gradio_client send: without one,
        # Gradio builds a fresh session (the config of every component) for each call
        session = {} if mode == "http-no-session" else {"session_hash": f"bench-{user}-{random.random():.9f}"}

        def call(name, *data):
            r = s.post(f"{url}/gradio_api/run/{name}", json={"data": list(data), **session}, timeout=60)
            r.raise_for_status()
            return r.json()["data"][0]
        return call, s.close

    def client_user(user):
        client = Client(url, auth=(user, PASSWORD), verbose=False)
        return (lambda name, *data: client.predict(*data, api_name=f"/{name}")), client.close

    def work(user):
        call, close = (client_user if mode == "client" else http_user)(user)
        for r in range(rounds):
            t = time.perf_counter()
            task = call("next_pair")
            if not task:
                break
            call("grade", task["query_id"], task["candidate_id"], r % 4, task["task_id"], "")
            with lock:
                calls.append((time.perf_counter() - t) * 1000)
        close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_users) as pool:
        list(pool.map(work, USERS[:n_users]))
    out = summary(calls)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


DIMS = (64, 128, 256, 512, 768)  # the demo model's Matryoshka dims
GRANULARITIES = ("note", "text", "image", "region")
STRATEGIES = ("exact", "adaptive", "local", "global+local")


def memory_session(url: str, home: Path, proc, minutes: float, sample_s: float) -> dict:
    """A scripted mix of what people do, for ``minutes``, sampling the app's RSS every ``sample_s``:

    - two explorers click notes (HTTP with a page session, as the browser's events carry one) at
      random dims, granularities and strategies, a third of the clicks side by side, and reload the
      page (a new session) every minute;
    - an uploader sends a catalogue photo with a new title every 20 s (``gradio_client``: an upload
      goes through the queue);
    - two annotators take the next pair and grade it, about one grade a second each;
    - one person in headless Chromium opens the page (a new session each round), draws the Map at
      a random dim and granularity (a new UMAP layout until all are cached), then clicks five
      catalogue notes in Explore; the page's timers tick meanwhile.
    """
    from gradio_client import Client, handle_file

    note_ids = NoteEmbeddings.load(next(home.glob("versions/*/embeddings"))).note_ids
    photos = sorted(home.glob("thumbs/*/*.jpg"))[:200]
    deadline = time.time() + minutes * 60
    counts = {"explore": 0, "compare": 0, "sessions": 0, "uploads": 0, "grades": 0, "maps": 0,
              "browser_clicks": 0, "errors": 0}
    lock = threading.Lock()

    def count(what: str) -> None:
        with lock:
            counts[what] += 1

    errors: list[str] = []  # the first few, to say what failed

    def failed(exc: BaseException) -> None:
        count("errors")
        with lock:
            if len(errors) < 20:
                errors.append(f"{time.time() - deadline + minutes * 60:.0f} s: {type(exc).__name__}: {exc}"[:300])

    def login(user: str) -> requests.Session:
        s = requests.Session()
        s.post(f"{url}/login", data={"username": user, "password": PASSWORD}, timeout=30).raise_for_status()
        return s

    def explorer(seed: int) -> None:
        rng, s = random.Random(seed), login(USERS[2 + seed])
        session, reloaded = None, 0.0
        while time.time() < deadline:
            if time.time() - reloaded > 60:
                session, reloaded = f"mem{seed}-{rng.getrandbits(40):x}", time.time()
                count("sessions")
            compare = rng.random() < 1 / 3
            data = [rng.choice(note_ids), 12, "note", rng.choice(DIMS), rng.choice(GRANULARITIES),
                    rng.choice(STRATEGIES), compare, rng.choice(DIMS), rng.choice(GRANULARITIES),
                    rng.choice(STRATEGIES), None]
            try:
                r = s.post(f"{url}/gradio_api/run/explore_note", json={"data": data, "session_hash": session},
                           timeout=60)
                r.raise_for_status()
                count("compare" if compare else "explore")
            except requests.RequestException as exc:
                failed(exc)
            time.sleep(rng.uniform(0.5, 1.5))

    def uploader() -> None:
        rng = random.Random(7)
        client = Client(url, auth=(USERS[5], PASSWORD), verbose=False, download_files=False,
                        analytics_enabled=False)
        while time.time() < deadline:
            try:
                client.predict([handle_file(str(rng.choice(photos)))], f"upload {rng.getrandbits(32):x}", "",
                               12, "note", 768, "note", "exact", False, 64, "note", "exact", None,
                               api_name="/explore_upload")
                count("uploads")
            except Exception as exc:
                failed(exc)
            time.sleep(20)
        client.close()

    def annotator(user: str) -> None:
        s = login(user)

        def call(name, *data):
            r = s.post(f"{url}/gradio_api/run/{name}", json={"data": list(data)}, timeout=60)
            r.raise_for_status()
            return r.json()["data"][0]
        rng = random.Random(user)
        while time.time() < deadline:
            try:
                task = call("next_pair")
                if task:
                    call("grade", task["query_id"], task["candidate_id"], rng.randrange(4), task["task_id"], "")
                    count("grades")
            except requests.RequestException as exc:
                failed(exc)
            time.sleep(rng.uniform(0.5, 1.5))

    def browser_user() -> None:
        from app.browser import login, open_tab, pick_dropdown

        rng = random.Random(11)
        with chromium() as b:
            while time.time() < deadline:
                page = login(b, url, USERS[8], PASSWORD, timeout_ms=120_000)  # a new page, a new session
                count("sessions")
                try:
                    open_tab(page, "Map")
                    pick_dropdown(page, "map-dim", str(rng.choice(DIMS)))
                    pick_dropdown(page, "map-granularity", rng.choice(GRANULARITIES))
                    page.click("#map-draw")
                    left_ms = max(1000, int((deadline - time.time()) * 1000))
                    page.wait_for_selector("#map-status:has-text('click a point')", timeout=left_ms)
                    count("maps")
                    open_tab(page, "Explore")
                    for _ in range(5):
                        page.locator("#explore-catalogue .thumbnail-item").nth(rng.randrange(12)).click()
                        page.wait_for_timeout(1500)
                        count("browser_clicks")
                except Exception as exc:
                    failed(exc)
                finally:
                    page.close()

    workers = [threading.Thread(target=explorer, args=(i,), daemon=True) for i in range(2)]
    workers += [threading.Thread(target=browser_user, daemon=True)]
    workers += [threading.Thread(target=uploader, daemon=True)]
    workers += [threading.Thread(target=annotator, args=(u,), daemon=True) for u in USERS[6:8]]
    p = psutil.Process(proc.pid)
    t0, samples = time.time(), []
    for w in workers:
        w.start()
    while True:
        mem = p.memory_info()  # rss = anonymous + file-backed (mapped vectors, libraries) pages
        samples.append({"t_s": round(time.time() - t0, 1), "app_mb": round(mem.rss / 2**20, 1),
                        "app_anon_mb": round((mem.rss - mem.shared) / 2**20, 1),
                        "with_children_mb": round(rss_mb(proc), 1)})
        if time.time() >= deadline:
            break
        time.sleep(min(sample_s, max(0.0, deadline - time.time())))
    for w in workers:
        w.join(120)

    def at(minute: float) -> dict:
        return min(samples, key=lambda x: abs(x["t_s"] - minute * 60))

    marks = [m for m in (0, 1, 5, 10, 20, 30, 45, 60) if m <= minutes] + [minutes]
    return {"minutes": minutes, "sample_s": sample_s, "counts": counts, "errors": errors,
            "at_minute": {str(m): at(m) for m in dict.fromkeys(marks)}, "samples": samples}


def service_baseline(home: str, corpus: str, n: int, strategy: str = "exact") -> dict:
    """The same work in-process, without HTTP, Gradio or a browser: what the app adds on top."""
    import logging
    import random

    os.environ["UNINOTE_HOME"] = home
    if corpus:
        os.environ["UNINOTE_DEMO_CORPUS"] = corpus
    from uninote.service import ServiceConfig, UniNoteService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the start's steps, timed
    t0 = time.perf_counter()
    svc = UniNoteService(ServiceConfig.from_env()).start()
    started = {"start_s": round(time.perf_counter() - t0, 1), "rss_mb_started": round(rss_mb(os), 0)}
    ids = random.Random(0).sample([x.note_id for x in svc.corpus.notes], n)
    search = []
    for note_id in ids:
        t = time.perf_counter()
        result = svc.neighbours(note_id, k=12, strategy=strategy)
        [svc.thumbnail(x.note_id) for x in result.neighbours]
        search.append((time.perf_counter() - t) * 1000)
    grade = []
    for i in range(n):
        t = time.perf_counter()
        task = svc.next_pair("bench-baseline")
        svc.grade("bench-baseline", task.query_id, task.candidate_id, i % 4, {"task_id": task.id})
        svc.next_pair("bench-baseline")
        grade.append((time.perf_counter() - t) * 1000)
    return {"run": "in-process baseline", **started, "strategy": strategy, "neighbours_12": summary(search),
            "grade_then_next_pair": summary(grade), "rss_mb": round(rss_mb(os), 0),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def run_once(args, label: str) -> dict:
    env = {"UNINOTE_HOME": args.home, "UNINOTE_DEMO_CORPUS": args.corpus} if args.corpus else \
        {"UNINOTE_HOME": args.home}
    if args.cache:
        env["UNINOTE_CACHE"] = args.cache
    if args.sft_overrides:
        env["UNINOTE_SFT_OVERRIDES"] = args.sft_overrides
    load_start = open("/proc/loadavg").read().split()[:3]
    proc, url, t0 = start_app(env, Path(args.home) / f"bench-{label}.log", Path(args.app_dir or REPO))
    try:
        served = wait_served(url, t0, args.timeout)
        usable = wait_usable(url, t0, args.timeout, args.note_id, args.strategy)
        cpu = cpu_seconds(proc)
        result = {"run": label, "page_served_s": round(served, 1), "usable_s": round(usable, 1),
                  **{f"{k}_usable": v for k, v in cpu.items()},
                  "rss_mb_usable": round(rss_mb(proc), 0), "usable_memory": app_memory_mb(proc),
                  "strategy": args.strategy,
                  "cache": env.get("UNINOTE_CACHE", "default"), "loadavg_start": load_start}
        if args.wait_complete and label == "first-run":
            complete = wait_complete(Path(args.home), t0, args.timeout)
            if complete is not None:
                result.update(complete_s=round(complete, 1),
                              **{f"{k}_complete": v for k, v in cpu_seconds(proc).items()})
        if label != "first-run" and args.load and (args.measure or args.memory_minutes):
            result["warm_s"] = round(wait_warm(Path(args.home), t0, args.timeout), 1)
        if args.measure and label != "first-run":
            result["explore_http"] = explore_http(url, Path(args.home), args.n, args.strategy)
            result.update(browser_latencies(url, args.n, args.strategy, grade=args.load))
            if args.load:
                result["concurrent_20_http"] = concurrent_annotators(url, mode="http")
                result["concurrent_20_http_no_session"] = concurrent_annotators(url, mode="http-no-session")
                result["concurrent_20_gradio_client"] = concurrent_annotators(url, mode="client")
        if args.memory_minutes:
            result["memory_session"] = memory_session(url, Path(args.home), proc, args.memory_minutes,
                                                      args.sample_s)
        result["rss_mb"] = round(rss_mb(proc), 0)
        result.update(cpu_seconds(proc))
        result["memory"] = app_memory_mb(proc)
        result["loadavg"] = open("/proc/loadavg").read().split()[:3]
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, help="UNINOTE_HOME for the benchmark (versions, db, caches)")
    ap.add_argument("--corpus", default="", help="UNINOTE_DEMO_CORPUS (default: the app's default)")
    ap.add_argument("--fresh", action="store_true",
                    help="delete --home first and use an empty UNINOTE_CACHE (default <home>/cache): "
                         "measure a real first run")
    ap.add_argument("--cache", default="", help="UNINOTE_CACHE for the app (default: <home>/cache with "
                    "--fresh, else the environment's)")
    ap.add_argument("--wait-complete", action="store_true",
                    help="first run on a corpus bigger than UNINOTE_FIRST_BUILD_NOTES: also time the "
                         "background completion (every note added)")
    ap.add_argument("--note-id", default="15970", help="a note id of the corpus for the usability probe")
    ap.add_argument("--n", type=int, default=30, help="browser repetitions per latency")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for a usable app")
    ap.add_argument("--sft-overrides", default="", help="UNINOTE_SFT_OVERRIDES JSON for the first run")
    ap.add_argument("--no-measure", dest="measure", action="store_false", help="start-up times only")
    ap.add_argument("--memory-minutes", type=float, default=0,
                    help="then run the scripted session this long, sampling RSS (memory_session)")
    ap.add_argument("--sample-s", type=float, default=5, help="seconds between RSS samples")
    ap.add_argument("--out", default="", help="also write the results (samples included) to this JSON file")
    ap.add_argument("--strategy", default="exact", choices=["exact", "adaptive"],
                    help="Explore search strategy (a big version: adaptive, the 64-d shortlist re-ranked at full dim)")
    ap.add_argument("--no-load", dest="load", action="store_false",
                    help="skip the warm-up wait, grading and the 20 concurrent annotators (Explore and start only)")
    ap.add_argument("--app-dir", default="", help=(
        "checkout whose app.py is started (default this one; with PYTHONPATH set to it, another "
        "commit's app is measured by this script, e.g. a before/after pair)"))
    ap.add_argument("--baseline-only", action="store_true",
                    help="only the in-process service baseline (needs a built version in --home)")
    args = ap.parse_args()
    if args.baseline_only:
        print(json.dumps(service_baseline(args.home, args.corpus, args.n, args.strategy)), flush=True)
        return
    if args.fresh:
        shutil.rmtree(args.home, ignore_errors=True)
        args.cache = args.cache or str(Path(args.home) / "cache")
        if Path(args.cache).exists():
            shutil.rmtree(args.cache)
    Path(args.home).mkdir(parents=True, exist_ok=True)
    results = []
    if args.fresh:
        results.append(run_once(args, "first-run"))
        print(json.dumps(results[-1]), flush=True)
    results.append(run_once(args, "cached"))
    brief = {k: v for k, v in results[-1].items() if k != "memory_session"}
    if "memory_session" in results[-1]:
        brief["memory_session"] = {k: v for k, v in results[-1]["memory_session"].items() if k != "samples"}
    print(json.dumps(brief), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
