"""The worker the app runs: restarted when it dies, stopped with the app, gone when the app is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

from uninote.cli.worker import watch_parent
from uninote.service.worker_process import WorkerProcess, worker_command


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_command_is_the_uninote_worker_on_the_apps_store_and_root(tmp_path):
    proc = WorkerProcess("sqlite:///x.db", tmp_path, device="cpu")
    assert proc.command[1:7] == ["-m", "uninote.cli.main", "worker", "--db", "sqlite:///x.db", "--versions-root"]
    assert proc.command[proc.command.index("--parent-pid") + 1] == str(os.getpid())
    assert worker_command("u", tmp_path)[-1] == str(tmp_path)


def test_a_worker_that_dies_is_restarted_and_stop_ends_it(tmp_path):
    crashing = WorkerProcess("sqlite:///x.db", tmp_path, max_backoff_s=0.2)
    crashing.command = [sys.executable, "-c", "import sys; sys.exit(3)"]
    crashing.start()
    try:
        assert wait_for(lambda: crashing.restarts >= 2)
        assert crashing.last_exit == 3
    finally:
        crashing.stop()
    assert crashing.describe() == "stopped"

    sleeping = WorkerProcess("sqlite:///x.db", tmp_path)
    sleeping.command = [sys.executable, "-c", "import time; time.sleep(120)"]
    sleeping.start()
    assert wait_for(lambda: sleeping.running)
    pid = sleeping.pid
    assert sleeping.describe() == f"running, pid {pid}"
    t0 = time.time()
    sleeping.stop()
    assert time.time() - t0 < 10 and not sleeping.running and sleeping.restarts == 0


def test_watch_parent_stops_once_the_parent_is_gone():
    stop = threading.Event()
    watch_parent(os.getppid(), stop, every_s=0.01)
    assert not stop.wait(0.2)  # our parent is alive
    stop.set()
    gone = threading.Event()
    watch_parent(-1, gone, every_s=0.01)  # not our parent: as if it had exited
    assert gone.wait(5)


def test_a_real_worker_exits_when_the_process_that_started_it_is_killed(tmp_path):
    """`uninote worker --parent-pid` started by a process that then dies (as a killed app)."""
    db = f"sqlite:///{tmp_path / 'a.db'}"
    pid_file = tmp_path / "worker.pid"
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-m", "uninote.cli.main", "worker", "--db", {db!r},
                                  "--versions-root", {str(tmp_path / 'versions')!r}, "--poll-seconds", "0.2",
                                  "--parent-pid", str(os.getpid())])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text())
        child = int(pid_file.read_text())
        time.sleep(1.0)
        proc.kill()  # SIGKILL: the parent gets no chance to stop its child
        proc.wait(10)

        def child_gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            return _zombie(child)

        assert wait_for(child_gone, timeout=90), "the worker outlived the process that started it"
    finally:
        if proc.poll() is None:
            proc.kill()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
