"""Schema versioning: create a fresh database, migrate an older one step by step, refuse a newer one.

Rules: a migration never drops data; a SQLite file is backed up (``VACUUM INTO``) before any step
runs; all steps run inside one write transaction (DDL is transactional on SQLite and PostgreSQL),
so a failed migration leaves the database exactly as it was.

History:
- v1: annotators, notes, judgments (no comment), label tasks and assignments, model versions, jobs.
- v2: ``judgments.comment``; ``judgment_history`` (append-only log, backfilled with one
  ``migrated`` row per existing judgment, so undo never reaches past the migration).
- v3: ``adjudications`` (a reviewer's final grade for a pair whose annotators disagree).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import (
    Column, Float, ForeignKey, Integer, MetaData, String, Table, func, inspect, select,
)  # fmt: skip
from sqlalchemy.engine import Connection

from annotations.db import Database
from annotations.errors import SchemaError
from annotations.models import AdjudicationRow, Base, JudgmentHistoryRow, SchemaInfo, SCHEMA_VERSION


def read_version(conn: Connection) -> int | None:
    """The schema version recorded in the database, None when it has no ``schema_info`` table."""
    if "schema_info" not in inspect(conn).get_table_names():
        return None
    value = conn.execute(
        select(SchemaInfo.value).where(SchemaInfo.key == "schema_version")
    ).scalar_one_or_none()
    return int(value) if value is not None else None


def _write_version(conn: Connection, version: int) -> None:
    table = SchemaInfo.__table__
    if conn.execute(select(table.c.key).where(table.c.key == "schema_version")).first():
        conn.execute(table.update().where(table.c.key == "schema_version").values(value=str(version)))
    else:
        conn.execute(table.insert().values(key="schema_version", value=str(version)))


def v1_metadata() -> MetaData:
    """The frozen v1 schema (used to build v1 databases in tests)."""
    md = MetaData()
    for name, table in Base.metadata.tables.items():
        if name not in ("judgments", "judgment_history", "adjudications"):  # added in v2, v3
            table.to_metadata(md)
    Table(
        "judgments", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("annotator_id", ForeignKey("annotators.id"), nullable=False),
        Column("query_id", ForeignKey("notes.note_id"), nullable=False),
        Column("candidate_id", ForeignKey("notes.note_id"), nullable=False),
        Column("grade", Integer, nullable=False),
        Column("model_version", String(128)), Column("dim", Integer),
        Column("granularity", String(32)), Column("strategy", String(32)), Column("rank", Integer),
        Column("task_id", ForeignKey("label_tasks.id")),
        Column("created_at", Float, nullable=False), Column("updated_at", Float, nullable=False),
        Column("revision", Integer, nullable=False, default=1),
    )  # fmt: skip
    return md


def _v1_to_v2(conn: Connection) -> None:
    comment_type = Base.metadata.tables["judgments"].c.comment.type.compile(conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE judgments ADD COLUMN comment {comment_type}")
    JudgmentHistoryRow.__table__.create(conn)
    judgments = Base.metadata.tables["judgments"]
    now = time.time()
    rows = conn.execute(select(judgments).order_by(judgments.c.id)).mappings().all()
    if rows:
        conn.execute(
            JudgmentHistoryRow.__table__.insert(),
            [
                dict(annotator_id=r["annotator_id"], query_id=r["query_id"],
                     candidate_id=r["candidate_id"], action="migrated", before_json=None,
                     after_json=json.dumps({k: r[k] for k in r.keys()}), undone=False, at=now)
                for r in rows
            ],
        )  # fmt: skip


def _v2_to_v3(conn: Connection) -> None:
    AdjudicationRow.__table__.create(conn)


SCHEMA_LOCK_KEY = 0x756E696E6F7465  # 'uninote'

# step from version N to N+1
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def _lock_schema(conn: Connection) -> None:
    """PostgreSQL: serialise schema creation/migration across processes (SQLite already is,
    through ``BEGIN IMMEDIATE``)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))


def ensure_schema(db: Database, migrate: bool = True) -> dict[str, object]:
    """Create, check or migrate the schema. Returns ``{"from": old, "to": new, "backup": path}``."""
    with db.write() as session:
        conn = session.connection()
        _lock_schema(conn)
        tables = set(inspect(conn).get_table_names())
        if not tables:
            Base.metadata.create_all(conn)
            _write_version(conn, SCHEMA_VERSION)
            return {"from": None, "to": SCHEMA_VERSION, "backup": None}
        version = read_version(conn)
    if version is None:
        raise SchemaError(
            f"{db.url}: not a UniNote annotation database (tables {sorted(tables)[:5]} but no "
            "schema_info); point --db / UNINOTE_DB at another file"
        )
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{db.url}: database schema v{version} is newer than this code (v{SCHEMA_VERSION}); "
            "upgrade uninote, the database was left untouched"
        )
    if version == SCHEMA_VERSION:
        return {"from": version, "to": version, "backup": None}
    if not migrate:
        raise SchemaError(
            f"{db.url}: database schema v{version} is older than v{SCHEMA_VERSION}; run "
            "`uninote db migrate --db URL` (a backup is made first, no data is dropped)"
        )
    backup = _backup_before_migration(db, version)
    with db.write() as session:
        conn = session.connection()
        _lock_schema(conn)
        current = read_version(conn)  # another process may have migrated meanwhile
        while current < SCHEMA_VERSION:
            MIGRATIONS[current](conn)
            current += 1
            _write_version(conn, current)
    return {"from": version, "to": SCHEMA_VERSION, "backup": backup}


def _backup_before_migration(db: Database, version: int) -> str | None:
    if db.path is None:
        return None
    from annotations.backup import backup_database

    dest = Path(f"{db.path}.schema-v{version}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
    backup_database(db, dest)
    return str(dest)
