"""Schema versioning: a v1 database is migrated (backup first, nothing dropped) or refused."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine

from annotations.errors import SchemaError
from annotations.migrations import v1_metadata
from annotations.models import SCHEMA_VERSION
from annotations.store import AnnotationStore


def _make_v1(path):
    engine = create_engine(f"sqlite:///{path}")
    md = v1_metadata()
    md.create_all(engine)
    t = md.tables
    with engine.begin() as conn:
        conn.execute(t["schema_info"].insert().values(key="schema_version", value="1"))
        conn.execute(t["annotators"].insert().values(id=1, name="ana", created_at=1.0))
        conn.execute(t["notes"].insert(), [
            dict(note_id=n, corpus="old", content_hash="h", uploaded=False, created_at=1.0, updated_at=1.0)
            for n in ("a", "b", "c")])  # fmt: skip
        conn.execute(t["judgments"].insert(), [
            dict(annotator_id=1, query_id="a", candidate_id="b", grade=3, dim=64, created_at=1.0,
                 updated_at=1.0, revision=1),
            dict(annotator_id=1, query_id="a", candidate_id="c", grade=0, dim=None, created_at=2.0,
                 updated_at=2.0, revision=1)])  # fmt: skip
    engine.dispose()
    assert "comment" not in [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(judgments)")]


def test_v1_database_is_migrated_keeping_every_grade(tmp_path):
    path = tmp_path / "old.db"
    _make_v1(path)
    with AnnotationStore(str(path)) as store:
        assert store.migration["from"] == 1 and store.migration["to"] == SCHEMA_VERSION
        backup = store.migration["backup"]
        assert [(j.candidate_id, j.grade, j.dim) for j in store.judgments()] == [("b", 3, 64), ("c", 0, None)]
        assert [h["action"] for h in store.judgment_history()] == ["migrated", "migrated"]
        assert store.undo("ana") is None  # undo never reaches past the migration
        store.submit_grade("ana", "a", "b", 2, comment="v2 column works")
        assert store.check()["schema_version"] == SCHEMA_VERSION
    with sqlite3.connect(backup) as old:  # the pre-migration backup is a v1 database
        assert old.execute("SELECT value FROM schema_info").fetchone() == ("1",)
        assert old.execute("SELECT count(*) FROM judgments").fetchone() == (2,)
    with AnnotationStore(str(path)) as again:  # reopening is a no-op
        assert again.migration == {"from": SCHEMA_VERSION, "to": SCHEMA_VERSION, "backup": None}


def _dump(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


def test_refusals_leave_the_database_untouched(tmp_path):
    path = tmp_path / "old.db"
    _make_v1(path)
    before = _dump(path)
    with pytest.raises(SchemaError, match=f"older than v{SCHEMA_VERSION}; run `uninote db migrate"):
        AnnotationStore(str(path), migrate=False)
    assert _dump(path) == before  # schema and rows unchanged (only the journal mode is WAL now)

    newer = tmp_path / "new.db"
    AnnotationStore(str(newer)).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE schema_info SET value='99'")
    with pytest.raises(SchemaError, match="v99 is newer than this code"):
        AnnotationStore(str(newer))

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(SchemaError, match="not a UniNote annotation database"):
        AnnotationStore(str(foreign))
