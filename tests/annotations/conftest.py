"""Fixtures for the annotation store tests: a fresh SQLite store with 20 registered notes."""

from __future__ import annotations

import pytest

from annotations.store import AnnotationStore
from uninote.data.note import Note

NOTE_IDS = [f"n{i}" for i in range(20)]


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "db" / "annotations.db"


@pytest.fixture
def store(db_path):
    s = AnnotationStore(str(db_path), lease_s=60)
    s.register_notes("toy", [Note(i, title=f"title {i}") for i in NOTE_IDS])
    yield s
    s.close()
