"""The service on a corpus read lazily (what a big notes.jsonl gets): same answers as on the eager
corpus, and a restart reads no note and registers none (the start path does not touch every note)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import tiny_service_config
from uninote.data import lazy, load_corpus
from uninote.service import UniNoteService
from uninote.service.catalogue import Catalogue


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Every note read from a lazy corpus and every register_notes call, counted."""
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("uninote.data.loaders.LAZY_MIN_BYTES", 1)  # this tiny corpus counts as big
    seen = {"read": 0, "iterated": 0, "registered": 0}
    read, iterate = lazy.LazyNotes._read, lazy.LazyNotes.__iter__

    def counting_iter(self):
        for note in iterate(self):
            seen["iterated"] += 1
            yield note

    monkeypatch.setattr(lazy.LazyNotes, "_read", lambda self, i: seen.__setitem__("read", seen["read"] + 1)
                        or read(self, i))
    monkeypatch.setattr(lazy.LazyNotes, "__iter__", counting_iter)
    from annotations.store import AnnotationStore

    register = AnnotationStore.register_notes
    monkeypatch.setattr(AnnotationStore, "register_notes", lambda self, *a: seen.__setitem__(
        "registered", seen["registered"] + 1) or register(self, *a))
    return seen


def test_restart_on_a_lazy_corpus_reads_and_registers_no_note(tmp_path, counted):
    config = tiny_service_config(tmp_path)
    first = UniNoteService(config).start()  # first run: embeds (reads every note) and registers them
    assert type(first.corpus).__name__ == "LazyCorpus"
    assert counted["registered"] == 1 and first.store.has_note("n5")
    for key in counted:
        counted[key] = 0
    svc = UniNoteService(config).start()
    assert svc.ready and counted == {"read": 0, "iterated": 0, "registered": 0}

    eager = load_corpus(config.corpus, on_error="skip")
    result = svc.neighbours("n3", k=5)
    assert [n.title for n in result.neighbours] == [eager.get(n.note_id).title for n in result.neighbours]
    assert counted["read"] <= 6 and counted["iterated"] == 0  # the query and its neighbours only
    built = Catalogue(eager.notes)
    for text in ["", "red", "n1", "blu sh"]:
        a, b = built.find(text, limit=7), svc.search_catalogue(text, limit=7)
        assert ([n.note_id for n in a.notes], a.total) == ([n.note_id for n in b.notes], b.total), text
    assert counted["iterated"] == 0


def test_a_changed_corpus_is_registered_again_at_the_next_start(tmp_path, counted):
    config = tiny_service_config(tmp_path)
    UniNoteService(config).start()
    notes = Path(config.corpus) / "notes.jsonl"
    first = json.loads(notes.read_text().splitlines()[0])
    with open(notes, "a") as fh:  # a new note
        fh.write(json.dumps(dict(first, note_id="added-later", title="a note added later")) + "\n")
    os.utime(notes, ns=(1, 1))
    counted["registered"] = 0
    svc = UniNoteService(config).start()
    assert counted["registered"] == 1 and svc.store.has_note("added-later")
    assert svc.note("added-later").title == "a note added later"
    assert svc.search_catalogue("added later").notes[0].note_id == "added-later"
