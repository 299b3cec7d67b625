"""Engine, connection settings and the one write path of the annotation store.

SQLite (the default) is made safe for several annotators and a trainer at once:
- ``journal_mode=WAL`` (read back and checked: readers never block on the writer),
  ``synchronous=FULL`` (a committed grade survives power loss), ``busy_timeout`` (a writer waits
  for the lock instead of failing), ``foreign_keys=ON`` (every grade points at a known note).
- Every write goes through ``Database.write()``: a process-wide lock per database plus
  ``BEGIN IMMEDIATE``, so writers queue up front and never deadlock upgrading a read lock.

PostgreSQL (``postgresql+psycopg://user:pw@host/db``) uses the same code: the SQLite pragmas sit
behind a dialect check and row-level races are handled with ``FOR UPDATE SKIP LOCKED`` and
guarded updates where it matters (job claims, task leases).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from annotations.errors import SchemaError

BUSY_TIMEOUT_MS = 60_000
_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def default_url() -> str:
    """``$UNINOTE_DB`` (a URL or a path), else ``/data/uninote/annotations.db`` when ``/data`` is
    writable (Hugging Face Spaces persistent storage), else ``~/.cache/uninote/annotations.db``."""
    env = os.environ.get("UNINOTE_DB")
    if env:
        return env if "://" in env else sqlite_url(env)
    data = Path("/data")
    if data.is_dir() and os.access(data, os.W_OK):
        return sqlite_url(data / "uninote" / "annotations.db")
    cache = Path(os.environ.get("UNINOTE_CACHE", Path.home() / ".cache" / "uninote"))
    return sqlite_url(cache / "annotations.db")


def sqlite_url(path: str | os.PathLike) -> str:
    """The SQLAlchemy URL of a SQLite file (absolute path)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def normalize_url(url: str | os.PathLike | None) -> str:
    """Accept a URL, a bare file path, or None (the default location)."""
    if url is None:
        return default_url()
    url = str(url)
    return url if "://" in url else sqlite_url(url)


def redact_url(url: str) -> str:
    """The URL with any password hidden, for logs and manifests."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other backends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _set_sqlite_pragmas(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _begin)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = FULL")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _begin(conn) -> None:
    mode = conn.get_execution_options().get("uninote_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One engine plus the read and write session factories. Owned by ``AnnotationStore``."""

    def __init__(self, url: str):
        self.url = url
        self.backend = make_url(url).get_backend_name()
        self.path = sqlite_path(url)
        self.engine = self._make_engine()
        with _WRITE_LOCKS_GUARD:
            self._lock = _WRITE_LOCKS.setdefault(url, threading.RLock())
        self._writer = self.engine.execution_options(uninote_begin="IMMEDIATE")

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    def _make_engine(self) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True)
        args = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        if self.path is None:  # in-memory: one shared connection, or each thread sees its own DB
            engine = create_engine(self.url, connect_args=args, poolclass=StaticPool)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, connect_args=args)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        event.listen(engine, "begin", _begin)
        return engine

    def check_settings(self) -> dict[str, object]:
        """Read the SQLite settings back and refuse a file database that is not in WAL mode."""
        if not self.is_sqlite:
            return {"backend": self.backend}
        with self.engine.connect() as conn:
            got = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        if self.path is not None and str(got["journal_mode"]).lower() != "wal":
            raise SchemaError(
                f"{self.path}: SQLite refused WAL journal mode (got {got['journal_mode']!r}); "
                "put the database on a local disk (WAL does not work on network filesystems)"
            )
        return got

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; never blocks on a writer (WAL snapshot)."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """The only way to write: serialised in-process, ``BEGIN IMMEDIATE`` on SQLite; commits on
        success, rolls back (changing nothing) on any exception."""
        with self._lock:
            with Session(self._writer, expire_on_commit=False) as session:
                with session.begin():
                    yield session

    def dispose(self) -> None:
        self.engine.dispose()
