"""--ray on a bad address fails in seconds, naming it, and writes nothing; local runs never import Ray."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from uninote.cli.main import main
from uninote.cluster.connect import ClusterError, probe
from uninote.index.synthetic import synthetic_embeddings

ROOT = Path(__file__).resolve().parents[3]


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


@pytest.mark.parametrize("command", ["i2i", "embed"])
def test_unreachable_address_fails_fast_and_writes_nothing(tmp_path, capsys, command):
    synthetic_embeddings(20, dim=16).save(tmp_path / "emb")
    address = f"127.0.0.1:{_closed_port()}"
    args = {"i2i": ["i2i", "--embeddings", str(tmp_path / "emb")],
            "embed": ["embed", "--model", "baseline:text", "--corpus", str(tmp_path / "nowhere")]}[command]
    start = time.monotonic()
    assert main(args + ["--out", str(tmp_path / "out"), "--ray", address]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert f"no Ray cluster answers at --ray {address}" in err and "ray start --head" in err
    assert not (tmp_path / "out").exists()


def test_malformed_address_is_named():
    with pytest.raises(ClusterError, match="--ray 'headnode': expected HOST:PORT"):
        probe("headnode")


def test_local_runs_do_not_import_ray(tmp_path):
    synthetic_embeddings(30, dim=16).save(tmp_path / "emb")
    code = ("import sys; from uninote.cli.main import main; "
            f"assert main(['i2i', '--embeddings', {str(tmp_path / 'emb')!r}, '--out', {str(tmp_path / 'out')!r}, "
            "'--k', '3', '--dim', '8', '--quiet']) == 0; "
            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
