"""The same store code on PostgreSQL. Skips cleanly without psycopg or a PostgreSQL server.

Uses ``$UNINOTE_TEST_PG_URL`` (an admin URL, e.g. ``postgresql+psycopg://me@localhost/postgres``)
when set; otherwise starts a throw-away cluster on a Unix socket with Debian's ``initdb`` (as the
``postgres`` user when the tests run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'psycopg[binary]')")

from annotations.errors import InvalidGrade  # noqa: E402
from annotations.queue import LabelQueue, QueueConfig  # noqa: E402
from annotations.store import AnnotationStore  # noqa: E402
from uninote.data.note import Note  # noqa: E402


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    matches = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return matches[-1] if matches else None


@pytest.fixture(scope="module")
def pg_admin_url():
    if os.environ.get("UNINOTE_TEST_PG_URL"):
        yield os.environ["UNINOTE_TEST_PG_URL"]
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to start PostgreSQL as")
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="uninote-pg-"))  # pytest's tmp is 0700: postgres can't enter
    os.chmod(root, 0o777)
    data, port = root / "data", 54000 + os.getpid() % 1000
    run = lambda *cmd: subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=60)  # noqa: E731
    made = run(initdb, "-D", str(data), "-A", "trust", "-U", "uninote", "--no-sync")
    if made.returncode:
        pytest.skip(f"initdb failed: {made.stderr.strip()[:200]}")
    opts = f"-k {root} -c listen_addresses='' -p {port} -c fsync=off"
    started = run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
    if started.returncode:
        pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()[:200]}")
    yield f"postgresql+psycopg://uninote@/postgres?host={root}&port={port}"
    run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_store(pg_admin_url):
    from sqlalchemy.engine import make_url

    admin = make_url(pg_admin_url)
    name = f"uninote_{uuid.uuid4().hex[:10]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    store = AnnotationStore(admin.set(database=name).render_as_string(hide_password=False))
    store.register_notes("toy", [Note(f"n{i}") for i in range(12)])
    yield store
    store.close()


def test_grades_history_and_undo_on_postgres(pg_store):
    assert pg_store.settings == {"backend": "postgresql"}
    pg_store.submit_grade("ana", "n0", "n1", 1)
    pg_store.submit_grade("ana", "n0", "n1", 1)
    pg_store.submit_grade("ana", "n0", "n1", 3)
    assert pg_store.counts()["judgments"] == 1
    assert pg_store.undo("ana").grade == 3 and pg_store.judgments()[0].grade == 1
    before = pg_store.counts()
    with pytest.raises(InvalidGrade):
        pg_store.submit_grade("ana", "n0", "n0", 2)
    assert pg_store.counts() == before


def test_concurrent_queue_and_job_claims_on_postgres(pg_store):
    neighbours = {"dim=full/granularity=note/strategy=exact": {"n0": [f"n{i}" for i in range(1, 9)]}}
    cfg = QueueConfig(k=8, boundary_window=0, random_per_query=0, overlap=0.0)
    LabelQueue(pg_store, cfg).add_from_neighbours(neighbours)
    jobs = {pg_store.enqueue_job("rl", {"i": i}) for i in range(6)}
    other = AnnotationStore(pg_store.url)
    handed, claimed = [], []
    barrier = threading.Barrier(6)

    def annotator(i: int) -> None:
        store = (pg_store, other)[i % 2]
        q = LabelQueue(store, cfg)
        barrier.wait()
        while (task := q.next_task(f"a{i}")) is not None:
            handed.append(task.id)
            q.submit(f"a{i}", task, 2)
        while (job := store.claim_job(f"w{i}")) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert sorted(handed) == list(range(1, 9)) and pg_store.counts()["judgments"] == 8
    assert sorted(claimed) == sorted(jobs)
