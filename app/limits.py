"""What Gradio keeps between requests, and the app's bound on each.

Left alone, three things grow with use (measured in docs/results/app.md, "Memory over a session"):

- **sessions**: per browser tab (or ``gradio_client``), a copy of every component a callback
  updated and the page config, about 0.4 MB on a tiny corpus; Gradio keeps 10,000 sessions.
  Bound: ``MAX_SESSIONS`` ($UNINOTE_MAX_SESSIONS, default 100), the oldest dropped first; and
  the session of a closed page (its heartbeat ended: tab closed or reloaded) is dropped once unused
  for ``CLOSED_SESSION_S`` ($UNINOTE_CLOSED_SESSION_S, default 600) seconds, where Gradio keeps it
  until the bound pushes it out (a page that drew the map holds its figure, about 1.4 MB).
- **cached files**: every file a component shows is copied into Gradio's cache folder (a
  gallery of 12 thumbnails is 12 copies) and its path kept in a set. Bound: thumbnails are static
  paths (served from thumbs/, never copied), and the rest (uploads) is deleted ``DELETE_CACHE``
  ($UNINOTE_DELETE_CACHE, "every,age" in seconds, default "600,3600").
- **event analytics**: one row per queued event, never dropped, turned into a pandas frame after
  every event. Bound: pollers (timers) run outside the queue (``POLL``), and finished rows beyond
  the newest ``MAX_EVENTS`` ($UNINOTE_MAX_EVENTS, default 10,000) are dropped every
  ``TRIM_EVERY_S`` seconds by ``trim_event_analytics``.
- **the C heap** (glibc): each of the app's ~36 threads may get its own malloc arena (up to 8 per
  core), and memory freed inside an arena stays with the process. Bound: ``MALLOC_ARENAS``
  ($UNINOTE_MALLOC_ARENAS, default 2) arenas, set at start by ``bound_malloc``, and
  ``malloc_trim`` hands free heap pages back to the system every ``TRIM_EVERY_S`` seconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import os
import threading
import weakref

from uninote.errors import ConfigError

POLL = {"queue": False, "api_visibility": "private"}  # timer ticks: no queue, no analytics row
TRIM_EVERY_S = 60.0
FINISHED = ("success", "failed")


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"${name} must be a positive whole number, got {raw!r}")
    return value


def delete_cache_setting() -> tuple[int, int]:
    """``gr.Blocks(delete_cache=...)`` from $UNINOTE_DELETE_CACHE: "every,age" seconds."""
    raw = os.environ.get("UNINOTE_DELETE_CACHE", "600,3600")
    parts = raw.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"$UNINOTE_DELETE_CACHE must be 'every,age' in seconds (e.g. 600,3600), got {raw!r}")
    return int(parts[0]), int(parts[1])


def max_sessions() -> int:
    """Sessions whose state Gradio keeps (``launch(state_session_capacity=...)``)."""
    return _int_env("UNINOTE_MAX_SESSIONS", 100)


def max_events() -> int:
    """Finished events kept in Gradio's analytics (what /monitoring summarises)."""
    return _int_env("UNINOTE_MAX_EVENTS", 10_000)


def closed_session_s() -> int:
    """Seconds a closed page's session is kept after its last use."""
    return _int_env("UNINOTE_CLOSED_SESSION_S", 600)


def malloc_arenas() -> int:
    """How many malloc arenas the app's threads share ($UNINOTE_MALLOC_ARENAS)."""
    return _int_env("UNINOTE_MALLOC_ARENAS", 2)


def _glibc():
    """The C library when it is glibc (``mallopt`` and ``malloc_trim`` exist), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


def bound_malloc(arenas: int | None = None) -> bool:
    """Cap glibc's malloc arenas; call before the app starts its threads. False off glibc."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, malloc_arenas() if arenas is None else arenas))


def trim_malloc() -> bool:
    """Hand the heap's free pages back to the system (glibc); True when some were released."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


def drop_closed_sessions(state_holder, older_than_s: float, now: datetime.datetime | None = None) -> int:
    """Drop the sessions of closed pages last used more than ``older_than_s`` seconds ago (their
    ``gr.State`` values through Gradio's ``delete_state``, then the session). Returns how many."""
    now = now or datetime.datetime.now()
    with state_holder.lock:
        closed = [h for h, session in list(state_holder.session_data.items()) if session.is_closed
                  and (now - state_holder.time_last_used.get(h, now)).total_seconds() > older_than_s]
    for h in closed:
        try:
            state_holder.delete_state(h)
        except Exception:  # a state's delete callback failed: the session goes all the same
            pass
        with state_holder.lock:
            state_holder.session_data.pop(h, None)
            state_holder.time_last_used.pop(h, None)
    return len(closed)


def trim_event_analytics(queue, keep: int) -> int:
    """Drop the oldest finished rows of ``queue.event_analytics`` beyond ``keep``; rows of events
    still queued or running stay (Gradio writes to them when they finish). Returns rows dropped."""
    rows = queue.event_analytics
    finished = [key for key, row in list(rows.items()) if row.get("status") in FINISHED]
    drop = finished[: max(0, len(finished) - keep)]
    for key in drop:
        rows.pop(key, None)
    if drop:  # the /monitoring summary is recomputed once the table grows again
        queue.event_count_at_last_cache = min(queue.event_count_at_last_cache, len(rows))
    return len(drop)


def start_trimming(demo, keep: int | None = None, every_s: float = TRIM_EVERY_S,
                   closed_s: float | None = None) -> threading.Thread:
    """A daemon thread that, every ``every_s`` seconds, trims the analytics of ``demo``'s queue,
    drops closed pages' sessions unused for ``closed_s`` seconds and trims the C heap; it holds
    the demo weakly and ends once the demo is gone."""
    keep = max_events() if keep is None else keep
    closed_s = closed_session_s() if closed_s is None else closed_s
    blocks = weakref.ref(demo)
    stop = threading.Event()

    def loop():
        while not stop.wait(every_s):
            b = blocks()
            if b is None:
                return
            trim_event_analytics(b._queue, keep)
            holder = getattr(b, "state_holder", None)  # set by launch()
            if holder is not None and hasattr(holder, "session_data"):
                drop_closed_sessions(holder, closed_s)
            del b, holder
            trim_malloc()

    thread = threading.Thread(target=loop, name="uninote-trim-analytics", daemon=True)
    thread.start()
    return thread
