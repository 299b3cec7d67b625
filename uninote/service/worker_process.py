"""The trainer worker the app runs itself: ``uninote worker`` as a supervised child process.

``WorkerProcess(db_url, versions_root).start()`` launches the same command a person would run
(``python -m uninote.cli.main worker --db URL --versions-root DIR``) against the app's store and
versions root, restarts it when it exits unexpectedly (waiting longer after each quick failure),
and ``stop()`` ends it gracefully (SIGTERM: the job in flight stops at its next step and is
marked interrupted). The child also exits by itself when the app's process goes away
(``--parent-pid``), so a killed app leaves no worker behind. A separate process, not a thread:
RL training keeps its memory and its CPU time out of the process serving searches.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger("uninote.service.worker")


def worker_command(db_url: str, versions_root: Path | str, extra: list[str] | None = None) -> list[str]:
    """The ``uninote worker`` command line for this store and versions root."""
    return [sys.executable, "-m", "uninote.cli.main", "worker", "--db", db_url,
            "--versions-root", str(versions_root), *(extra or [])]


class WorkerProcess:
    """One supervised ``uninote worker`` child process."""

    def __init__(self, db_url: str, versions_root: Path | str, device: str = "auto",
                 poll_seconds: float = 2.0, max_backoff_s: float = 60.0):
        self.db_url, self.versions_root = db_url, Path(versions_root)
        self.worker_id = f"app-{socket.gethostname()}-{os.getpid()}"
        self.command = worker_command(db_url, versions_root, [
            "--device", device, "--poll-seconds", str(poll_seconds), "--worker-id", self.worker_id,
            "--parent-pid", str(os.getpid())])
        self.max_backoff_s = max_backoff_s
        self.restarts = 0
        self.last_exit: int | None = None
        self._proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def describe(self) -> str:
        """Its state in a few words: 'running, pid 123', 'restarting after exit code 1', ..."""
        if self._stopping.is_set():
            return "stopped"
        if self.running:
            again = f", restarted {self.restarts}x" if self.restarts else ""
            return f"running, pid {self.pid}{again}"
        if self.last_exit is not None:
            return f"restarting after exit code {self.last_exit}"
        return "starting"

    def start(self) -> "WorkerProcess":
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._supervise, name="uninote-worker",
                                                daemon=True)
                self._thread.start()
        return self

    def _spawn(self) -> subprocess.Popen:
        log.info("starting the trainer worker: %s", " ".join(self.command[1:]))
        return subprocess.Popen(self.command, env=dict(os.environ, PYTHONUNBUFFERED="1"))

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                self._proc = self._spawn()
            started = time.monotonic()
            code = self._proc.wait()
            self.last_exit = code
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            backoff = 1.0 if lived > 60 else min(backoff * 2, self.max_backoff_s)
            log.warning("the trainer worker exited with code %s after %.0f s; restarting in %.0f s",
                        code, lived, backoff)
            self.restarts += 1
            if self._stopping.wait(backoff):
                return

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the worker (it finishes its current step), then kill it after ``timeout``."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)
