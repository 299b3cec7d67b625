"""A lazily read corpus (``load_corpus(..., lazy=True)``) equals the eagerly read one, its index is
built once per file version, and opening it again reads no note."""

from __future__ import annotations

import json
import os

import pytest
from data_testkit import make_native, note_record

from uninote.data import load_corpus
from uninote.data import lazy as lazy_mod
from uninote.data.note import Note
from uninote.errors import CorpusError
from uninote.service.catalogue import Catalogue


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))


def messy(root):
    """Good notes plus what skip mode drops: malformed JSON, a duplicate id, a missing photo."""
    records = [note_record(i) for i in range(8)]
    records[2] = note_record(2, images=["images/n2.jpg", "images/missing.jpg"], title="Blue T-Shirt ünï")
    records.insert(4, "{not json")
    records.append(note_record(3, title="duplicate of n3"))
    records.append("   ")
    records.append(note_record(9, images=["images/n1.jpg"], meta={"colour": "blue"}))  # shares n1's photo
    return make_native(root, 8, records=records)


def test_lazy_corpus_equals_eager_corpus(tmp_path):
    root = messy(tmp_path / "c")
    with pytest.warns(UserWarning):
        eager = load_corpus(root, on_error="skip")
    with pytest.warns(UserWarning, match="skipped"):
        lazy = load_corpus(root, on_error="skip", lazy=True)
    assert type(lazy).__name__ == "LazyCorpus"
    assert len(lazy) == len(eager) == 9
    assert list(lazy.notes) == eager.notes  # iteration
    assert [lazy.notes[i] for i in range(len(lazy))] == eager.notes  # random access
    assert lazy.notes[-1] == eager.notes[-1] and lazy.notes[1:3] == eager.notes[1:3]
    assert lazy.get("n2").images == ["images/n2.jpg"]  # the missing photo dropped, as eagerly
    for n in eager.notes:
        assert n.note_id in lazy and lazy.index_of(n.note_id) == eager.index_of(n.note_id)
        assert lazy.get(n.note_id) == n
    assert "nope" not in lazy and 3 not in lazy
    with pytest.raises(KeyError):
        lazy.get("nope")
    assert lazy.qrels == eager.qrels and lazy.pairs == eager.pairs and lazy.name == eager.name
    firsts = {}
    for n in eager.notes:
        firsts.setdefault(n.images[0], n)
    assert lazy.photo_notes() == list(firsts.values())


def test_stored_word_index_searches_like_the_built_one(tmp_path):
    root = messy(tmp_path / "c")
    with pytest.warns(UserWarning):
        eager = load_corpus(root, on_error="skip")
        lazy = load_corpus(root, on_error="skip", lazy=True)
    built, stored = Catalogue(eager.notes), Catalogue(lazy.notes, lazy.word_index)
    for text in ["", "title", "blue", "t shirt", "ünï", "n", "n9", "body 7", "t1", "xyz"]:
        a, b = built.find(text, limit=5), stored.find(text, limit=5)
        assert (a.notes, a.total) == (b.notes, b.total), text


def test_fail_mode_raises_like_the_eager_reader(tmp_path):
    root = messy(tmp_path / "c")
    with pytest.raises(CorpusError) as eager:
        load_corpus(root)
    with pytest.raises(CorpusError) as lazy:
        load_corpus(root, lazy=True)
    assert str(lazy.value) == str(eager.value)


def test_index_built_once_and_again_when_the_file_changes(tmp_path, monkeypatch):
    root = make_native(tmp_path / "c", 20)
    builds = []
    real = lazy_mod._build_index
    monkeypatch.setattr(lazy_mod, "_build_index", lambda *a: builds.append(1) or real(*a))
    reads = []
    real_from_json = Note.from_json.__func__
    monkeypatch.setattr(Note, "from_json", classmethod(lambda cls, obj: reads.append(1) or real_from_json(cls, obj)))
    first = load_corpus(root, lazy=True)
    assert len(builds) == 1 and len(reads) == 20  # the one pass that checks every line
    reads.clear()
    again = load_corpus(root, lazy=True)
    assert len(builds) == 1 and reads == [] and len(again) == 20  # opening reads no note
    assert "n13" in again and reads == []
    assert again.get("n13").title == "title 13" and len(reads) == 1  # only the note asked for
    assert again.fingerprint == first.fingerprint

    with open(root / "notes.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(note_record(1, note_id="extra", title="added later")) + "\n")
    os.utime(root / "notes.jsonl", ns=(1, 1))  # a new mtime even on a coarse clock
    changed = load_corpus(root, lazy=True)
    assert len(builds) == 2 and len(changed) == 21 and changed.get("extra").title == "added later"
    assert changed.fingerprint != first.fingerprint


def test_auto_reads_only_big_files_lazily(tmp_path, monkeypatch):
    root = make_native(tmp_path / "c", 4)
    assert type(load_corpus(root, lazy=None)).__name__ == "Corpus"
    monkeypatch.setattr("uninote.data.loaders.LAZY_MIN_BYTES", 1)
    assert type(load_corpus(root, lazy=None)).__name__ == "LazyCorpus"
    assert type(load_corpus(root, lazy=None, limit=2)).__name__ == "Corpus"  # a subset is eager
