"""Connecting to a Ray cluster: fail within seconds, naming the address, when none answers."""

from __future__ import annotations

import logging
import socket

from uninote.errors import UniNoteError

PROBE_TIMEOUT_S = 5.0
CLIENT_PORT = 10001


class ClusterError(UniNoteError):
    """No Ray cluster answers at the address given (or the cluster cannot run the job)."""


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        if "://" in address:  # ray://host uses the client port
            return rest, CLIENT_PORT
        raise ClusterError(f"--ray {address!r}: expected HOST:PORT (the head's GCS port, e.g. 127.0.0.1:6379), "
                           "ray://HOST:PORT, or auto")
    return host, int(port)


def probe(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Open (and close) a TCP connection to the head at ``address``; ``ClusterError`` if none answers."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at --ray {address} ({exc.strerror or exc}); start one "
                           f"with `ray start --head` there, or check the address") from None


def connect(address: str, timeout_s: float = PROBE_TIMEOUT_S):
    """The ``ray`` module, connected to the running cluster at ``address`` (``HOST:PORT``,
    ``ray://HOST:PORT`` or ``auto``: the cluster started on this machine)."""
    if address != "auto":
        probe(address, timeout_s)
    import ray

    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"cannot connect to the Ray cluster at --ray {address}: {first}") from None
    return ray


def cluster_gpus(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))
