"""Online backup and integrity checks. Safe while annotators keep writing (WAL snapshot)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from annotations.db import Database
from annotations.errors import AnnotationError


def integrity_check(path: str | Path) -> str:
    """``PRAGMA integrity_check`` of a SQLite file: ``"ok"`` or the first problems found."""
    conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "\n".join(str(r[0]) for r in rows)


def backup_database(db: Database, dest: str | Path) -> Path:
    """Write a consistent, compacted copy of the database to ``dest`` with ``VACUUM INTO``.

    Runs as a read transaction: concurrent grade writes continue (they are not in the copy if
    they commit after it started). The copy is then checked with ``integrity_check``.
    PostgreSQL databases are backed up with ``pg_dump`` instead.
    """
    if not db.is_sqlite or db.path is None:
        raise AnnotationError(f"{db.url}: backup works on SQLite files; use pg_dump for PostgreSQL")
    dest = Path(dest).expanduser().resolve()
    if dest.exists():
        raise AnnotationError(f"{dest}: backup target exists; choose a new file name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("VACUUM INTO ?", (str(dest),))
        cur.close()
    finally:
        raw.close()
    result = integrity_check(dest)
    if result != "ok":
        raise AnnotationError(f"{dest}: backup failed integrity_check: {result}")
    return dest
