"""Store: settings, idempotent grades with history, undo, bad input, notes and uploads."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from annotations.db import default_url, redact_url
from annotations.errors import AnnotationError, InvalidGrade, UnknownNote
from annotations.notes import NotesMixin
from annotations.store import AnnotationStore
from uninote.data.note import Note
from uninote.errors import ImageError, UniNoteError


def _png(color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buf, format="PNG")
    return buf.getvalue()


def test_sqlite_settings_read_back(store, db_path):
    assert store.settings["journal_mode"] == "wal"
    assert store.settings["synchronous"] == 2  # FULL
    assert store.settings["foreign_keys"] == 1
    assert store.settings["busy_timeout"] >= 5000
    raw = sqlite3.connect(db_path)  # WAL is persistent: a plain connection sees it too
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    assert store.check()["integrity_check"] == "ok"


def test_default_url_prefers_env_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("UNINOTE_DB", str(tmp_path / "x.db"))
    assert default_url() == f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("UNINOTE_DB", "postgresql+psycopg://u:secret@h/db")
    assert default_url() == "postgresql+psycopg://u:secret@h/db"
    assert "secret" not in redact_url(default_url())
    monkeypatch.delenv("UNINOTE_DB")
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    import os

    expected = "/data/uninote/annotations.db" if os.access("/data", os.W_OK) else str(tmp_path / "cache")
    assert expected in default_url()


def test_from_env_and_images_dir_beside_db(monkeypatch, tmp_path):
    monkeypatch.setenv("UNINOTE_DB", str(tmp_path / "e" / "a.db"))
    with AnnotationStore.from_env() as s:
        assert s.url.endswith("/e/a.db")
        assert s.images_dir == tmp_path / "e" / "images"


def test_same_grade_twice_is_one_row_and_no_history(store):
    j1 = store.submit_grade("ana", "n0", "n1", 2, dim=64, rank=3)
    j2 = store.submit_grade("ana", "n0", "n1", 2, dim=64, rank=3)
    assert j1 == j2
    assert store.counts()["judgments"] == 1
    assert [h["action"] for h in store.judgment_history()] == ["create"]


def test_changed_grade_updates_with_history_and_undo_walks_back(store):
    store.submit_grade("ana", "n0", "n1", 1, dim=64)
    store.submit_grade("ana", "n0", "n2", 0)
    store.submit_grade("ana", "n0", "n1", 3, dim=128, comment="same shoe")
    (row,) = store.judgments(candidate_id="n1")
    assert (row.grade, row.dim, row.comment, row.revision) == (3, 128, "same shoe", 2)
    assert store.counts()["judgments"] == 2

    taken = store.undo("ana")  # undo the update: back to grade 1 at dim 64
    assert (taken.candidate_id, taken.grade) == ("n1", 3)
    (row,) = store.judgments(candidate_id="n1")
    assert (row.grade, row.dim, row.comment) == (1, 64, None)
    assert store.undo("ana").candidate_id == "n2"  # undo the create of n2: row removed
    assert store.judgments(candidate_id="n2") == []
    assert store.undo("ana").grade == 1  # undo the first grade
    assert store.judgments() == [] and store.undo("ana") is None
    actions = [h["action"] for h in store.judgment_history()]
    assert actions == ["create", "create", "update", "undo", "undo", "undo"]


def test_undo_is_per_annotator(store):
    store.submit_grade("ana", "n0", "n1", 1)
    store.submit_grade("bob", "n0", "n1", 2)
    assert store.undo("ana").annotator == "ana"
    assert [(j.annotator, j.grade) for j in store.judgments()] == [("bob", 2)]
    assert store.undo("nobody") is None


@pytest.mark.parametrize(
    "args, message",
    [
        (("ana", "n0", "n1", 4), "grade must be 0, 1, 2 or 3"),
        (("ana", "n0", "n1", -1), "grade must be 0, 1, 2 or 3"),
        (("ana", "n0", "n1", 2.5), "grade must be an integer"),
        (("ana", "n0", "n1", True), "grade must be an integer"),
        (("ana", "n0", "n1", "2"), "grade must be an integer"),
        (("", "n0", "n1", 2), "annotator name is empty"),
        (("   ", "n0", "n1", 2), "annotator name is empty"),
        (("ana", "n0", "nope", 2), "unknown note id 'nope'"),
        (("ana", "ghost", "n1", 2), "unknown note id 'ghost'"),
        (("ana", "n3", "n3", 2), "cannot be graded against itself"),
    ],
)
def test_bad_grade_is_refused_and_changes_nothing(store, args, message):
    store.submit_grade("ana", "n0", "n1", 1)
    before = (store.counts(), store.judgments(), store.judgment_history())
    with pytest.raises(InvalidGrade, match=message) as info:
        store.submit_grade(*args)
    assert isinstance(info.value, UniNoteError)
    assert (store.counts(), store.judgments(), store.judgment_history()) == before


def test_unknown_note_is_an_invalid_grade(store):
    with pytest.raises(UnknownNote):
        store.submit_grade("ana", "n0", "zz", 1)
    assert store.annotators() == []  # the refused call did not even create the annotator


def test_register_notes_is_idempotent_and_tracks_changes(store):
    assert store.register_notes("toy", [Note("n0", title="title n0")]) == {
        "added": 0, "updated": 0, "unchanged": 1}  # fmt: skip
    assert store.register_notes("toy", [Note("n0", title="edited"), Note("new")]) == {
        "added": 1, "updated": 1, "unchanged": 0}  # fmt: skip
    assert store.has_note("new") and not store.has_note("missing")
    assert len(store.note_ids("toy")) == 21


def test_register_corpus_once_per_fingerprint(store, db_path, monkeypatch):
    notes = [Note("big0", title="a"), Note("big1", title="b")]
    assert store.register_corpus("big", notes, "fp1") == {"added": 2, "updated": 0, "unchanged": 0}
    calls = []
    monkeypatch.setattr(AnnotationStore, "register_notes",
                        lambda self, *a: calls.append(a) or NotesMixin.register_notes(self, *a))
    with AnnotationStore(str(db_path)) as again:  # a restart on the same database
        assert again.register_corpus("big", notes, "fp1") is None and calls == []  # recorded: skipped
        assert again.register_corpus("other", notes[:1], "fp1") == {"added": 0, "updated": 1, "unchanged": 0}
        changed = [Note("big0", title="edited"), Note("big2")]
        assert again.register_corpus("big", changed, "fp2") == {"added": 1, "updated": 1, "unchanged": 0}
        assert again.register_corpus("big", changed, "fp2") is None and len(calls) == 2
        assert again.register_corpus("big", changed) == {"added": 0, "updated": 0, "unchanged": 2}
        assert again.has_note("big2") and set(again.note_ids("big")) == {"big0", "big1", "big2"}


def test_upload_survives_restart_and_is_content_addressed(store, db_path):
    img = _png()
    note = store.add_uploaded_note(Note("", title="my upload", tags=["red"]), [img, img])
    assert note.note_id.startswith("upload-")
    assert note.images[0] == note.images[1] and Path(note.images[0]).read_bytes() == img
    assert Path(note.images[0]).parent.parent == store.images_dir
    assert store.add_uploaded_note(Note("", title="my upload", tags=["red"]), [img, img]) == note
    store.submit_grade("ana", note.note_id, "n1", 3)
    store.close()
    with AnnotationStore(str(db_path)) as again:
        assert again.uploaded_notes() == [note]
        assert again.judgments()[0].query_id == note.note_id


def test_upload_with_a_bad_image_stores_nothing(store):
    before = store.counts()
    with pytest.raises(ImageError, match="upload image 2"):
        store.add_uploaded_note(Note("u1", title="x"), [_png((0, 0, 255)), b"not an image"])
    assert store.counts() == before and store.uploaded_notes() == []
    assert not any(p.is_file() for p in store.images_dir.rglob("*"))


def test_upload_failing_in_the_database_removes_its_new_photos(store):
    store.add_uploaded_note(Note("u1", title="first"), [_png((0, 255, 0))])
    with pytest.raises(AnnotationError, match="already exists with other content"):
        store.add_uploaded_note(Note("u1", title="other"), [_png((9, 9, 9))])
    files = [p for p in store.images_dir.rglob("*") if p.is_file()]
    assert len(files) == 1 and len(store.uploaded_notes()) == 1


def test_model_versions(store):
    assert store.active_version() is None
    store.register_model_version("v1", "/ckpt/v1", corpus="toy", metrics={"ndcg": 0.5})
    store.register_model_version("v2", "/ckpt/v2", parent="v1", metrics={"ndcg": 0.6})
    assert store.active_version().version == "v1"  # the first one registered
    store.set_active_version("v2")
    assert store.active_version().parent == "v1"
    assert [v.version for v in store.list_model_versions()] == ["v1", "v2"]
    store.register_model_version("v2", "/ckpt/v2", metrics={"r_cap": 0.7})
    assert store.active_version().metrics == {"ndcg": 0.6, "r_cap": 0.7}
    with pytest.raises(AnnotationError, match="unknown model version 'v9'"):
        store.set_active_version("v9")
    assert store.active_version().version == "v2"


def test_backup_copy_is_complete_and_verified(store, tmp_path):
    store.submit_grade("ana", "n0", "n1", 2)
    dest = store.backup(tmp_path / "copy.db")
    with AnnotationStore(str(dest)) as copy:
        assert copy.judgments() == store.judgments()
    with pytest.raises(AnnotationError, match="exists"):
        store.backup(dest)


def test_reads_do_not_wait_for_an_open_write(store):
    import threading
    import time

    store.submit_grade("ana", "n0", "n1", 2)
    inside, release = threading.Event(), threading.Event()

    def slow_writer():
        with store.database.write() as session:  # holds the write lock and BEGIN IMMEDIATE
            from annotations.models import AnnotatorRow

            session.add(AnnotatorRow(name="pending", created_at=0.0))
            session.flush()
            inside.set()
            release.wait(10)

    t = threading.Thread(target=slow_writer)
    t.start()
    assert inside.wait(10)
    t0 = time.perf_counter()
    assert [j.grade for j in store.judgments()] == [2]  # reads the last committed snapshot
    assert "pending" not in store.annotators()
    assert time.perf_counter() - t0 < 1.0
    release.set()
    t.join()
    assert "pending" in store.annotators()


def test_numpy_context_values_and_bad_context(store):
    import numpy as np

    j = store.submit_grade("ana", "n0", "n1", np.int64(2), dim=np.int64(64), rank=np.int32(0))
    assert (j.grade, j.dim, j.rank) == (2, 64, 0) and type(j.dim) is int
    with pytest.raises(InvalidGrade, match="dim must be an integer >= 1"):
        store.submit_grade("ana", "n0", "n2", 1, dim=0)
    with pytest.raises(InvalidGrade, match="rank must be an integer >= 0"):
        store.submit_grade("ana", "n0", "n2", 1, rank="3")


def test_in_memory_store_is_shared_across_threads():
    import threading

    with AnnotationStore("sqlite://") as mem:
        mem.register_notes("t", [Note("a"), Note("b")])
        t = threading.Thread(target=lambda: mem.submit_grade("ana", "a", "b", 1))
        t.start()
        t.join()
        assert len(mem.judgments()) == 1
