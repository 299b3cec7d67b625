"""A real Ray cluster of one or more nodes on 127.0.0.1, owned by process id (tests, benchmarks).

All nodes are ``ray start --block`` processes started here (the head with its own short
``--temp-dir``, every port chosen free), so stopping the cluster terminates exactly the process
trees this module started: never ``ray stop``, which would reach any Ray on the machine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_range(width: int = 40) -> tuple[int, int]:
    for _ in range(50):
        base = random.randint(20_000, 60_000)
        try:
            for p in range(base, base + width):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base, base + width - 1
    raise RuntimeError("no free port range for Ray workers")


def node_env(cache: Path | None = None) -> dict:
    """The environment of the ``ray start`` processes (and so of every worker they spawn)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0",
               RAY_memory_monitor_refresh_ms="0", RAY_DEDUP_LOGS="0")
    if cache is not None:
        env["UNINOTE_CACHE"] = str(cache)  # the workers never touch the user's caches
    return env


class LocalCluster:
    """``LocalCluster(folder).start()``: a head and ``nodes - 1`` more nodes of ``cpus_per_node``
    CPUs each (the second one with the custom resource ``second_node``); ``address``; ``stop()``.
    Nodes inherit this environment with ``PYTHONPATH`` set to this checkout, one BLAS thread, and
    ``UNINOTE_CACHE`` in ``folder`` (or ``cache``)."""

    def __init__(self, folder: Path, cpus_per_node: int = 1, nodes: int = 2, cache: Path | None = None):
        self.folder, self.cpus, self.nodes = Path(folder), cpus_per_node, nodes
        self.cache = Path(cache) if cache else self.folder / "cache"
        # Ray's socket paths must stay under 108 bytes: a short folder of its own, removed by stop()
        self.temp_dir = Path(tempfile.mkdtemp(prefix="uninote-ray-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _node_args(self) -> list[str]:
        low, high = _port_range()
        return ["--node-ip-address", "127.0.0.1", "--num-cpus", str(self.cpus), "--num-gpus", "0",
                "--object-store-memory", str(150 * 2**20), "--disable-usage-stats", "--block",
                "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                "--min-worker-port", str(low), "--max-worker-port", str(high)]

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        log = self.folder / f"{name}.log"
        self.logs.append(log)
        proc = subprocess.Popen([RAY, "start", *args], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                env=node_env(self.cache), cwd=self.folder, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self) -> "LocalCluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._spawn(["--head", "--port", str(self.port), "--temp-dir", str(self.temp_dir),
                     "--include-dashboard", "false", "--ray-client-server-port", str(free_port()),
                     *self._node_args()], "head")
        self._wait_nodes(1)
        for i in range(1, self.nodes):
            resources = ["--resources", json.dumps({"second_node": 1})] if i == 1 else []
            self._spawn(["--address", self.address, *resources, *self._node_args()], f"node{i}")
        self._wait_nodes(self.nodes)
        return self

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_nodes(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                 "print(sum(1 for n in ray.nodes() if n['Alive']))")
        while time.monotonic() < deadline:
            for proc, log in zip(self.procs, self.logs):
                if proc.poll() is not None:
                    raise RuntimeError(f"ray start exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                out = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True,
                                     timeout=60, env=node_env())
                if out.stdout.strip().isdigit() and int(out.stdout.strip()) >= count:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster at {self.address} did not reach {count} nodes in {START_TIMEOUT_S}s")

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster: the ray start processes and their descendants."""
        out = []
        for proc in self.procs:
            try:
                p = psutil.Process(proc.pid)
                out += [p] + p.children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        return out

    def stop(self, timeout_s: float = 30) -> None:
        procs = self.processes()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        gone, alive = psutil.wait_procs(procs, timeout=timeout_s)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
