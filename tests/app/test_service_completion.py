"""A first version built on part of a big corpus, served at once; the rest added in the background.

Tiny random towers on the 36-note synthetic corpus: the first build takes its first 20 notes, the
completion adds the other 16 seven at a time (uninote/service/completion.py).
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest

from conftest import tiny_service_config
from uninote.errors import ConfigError, UniNoteError
from uninote.service import ServiceConfig, UniNoteService
from uninote.service import completion as completion_mod
from uninote.service.completion import first_build_corpus

FIRST, STEP = 20, 7


def subset_config(tmp_path, **kw):
    return replace(tiny_service_config(tmp_path), first_build_notes=FIRST, completion_notes=STEP, **kw)


@pytest.fixture
def steps(monkeypatch):
    """Record (and optionally hold or break) each completion step: ``steps.notes`` per step,
    ``steps.gate`` (an Event the steps wait on when ``steps.hold``), ``steps.fail_at`` (step index
    that raises, as a crash would)."""
    real = completion_mod.embed_notes

    class Steps:
        notes: list[list[str]] = []
        gate = threading.Event()
        hold = False
        fail_at: int | None = None

    s = Steps()
    s.notes = []

    def embed(model, corpus):
        if s.hold:
            assert s.gate.wait(30), "the test never released the completion"
        if s.fail_at is not None and len(s.notes) == s.fail_at:
            s.notes.append(None)
            raise RuntimeError("simulated crash while embedding")
        s.notes.append([n.note_id for n in corpus.notes])
        return real(model, corpus)

    monkeypatch.setattr(completion_mod, "embed_notes", embed)
    return s


def neighbour_lists(svc, note_ids, dim):
    return {q: [(n.note_id, n.score) for n in svc.neighbours(q, k=5, dim=dim).neighbours] for q in note_ids}


def test_first_version_holds_the_subset_and_completion_adds_the_rest_as_a_whole_build_would(tmp_path, steps):
    steps.hold = True
    svc = UniNoteService(subset_config(tmp_path / "a")).start()
    ids = [n.note_id for n in svc.corpus.notes]
    assert len(ids) == 36
    # served at once, on the first 20 notes; the rest waits
    assert svc.ready and svc.served.embeddings.note_ids == ids[:FIRST]
    assert svc.completing and "20 of 36 notes searchable, adding the rest in the background: 56%" in svc.status
    hits = svc.neighbours(ids[0], k=5).neighbours
    assert hits and all(h.note_id in ids[:FIRST] for h in hits)
    with pytest.raises(UniNoteError, match=f"note '{ids[30]}' is not searchable yet: 20 of 36 notes"):
        svc.neighbours(ids[30])
    task = svc.next_pair("ann0")  # annotating goes on during the completion
    svc.grade("ann0", task.query_id, task.candidate_id, 2, {"task_id": task.id})
    state = json.loads((svc.served.path / "completion.json").read_text())
    assert state["first_build_notes"] == FIRST and state["corpus_notes"] == 36 and not state["done"]

    steps.gate.set()
    assert svc.wait_completed(60)
    assert [len(x) for x in steps.notes] == [7, 7, 2]  # the 16 missing notes, 7 a step
    assert sorted(svc.served.embeddings.note_ids) == sorted(ids) and svc.completion() is None
    assert svc.status.endswith("· 36 notes")
    folder = svc.served.path
    assert json.loads((folder / "completion.json").read_text())["done"]
    assert json.loads((folder / "index" / "manifest.json").read_text())["slots"] == 36
    assert svc.neighbours(ids[30], k=5).neighbours

    # the same model built on the whole corpus at once gives the same neighbours
    whole = UniNoteService(replace(tiny_service_config(tmp_path / "b"), first_build_notes=0)).start()
    assert whole.served.version == svc.served.version and not (whole.served.path / "completion.json").exists()
    for dim in (16, 64):
        got, want = neighbour_lists(svc, ids, dim), neighbour_lists(whole, ids, dim)
        for q in ids:
            assert [n for n, _ in got[q]] == [n for n, _ in want[q]], (q, dim)
            np.testing.assert_allclose([s for _, s in got[q]], [s for _, s in want[q]], atol=1e-5)

    # a restart serves the completed folder from its saved index and adds nothing
    steps.notes.clear()
    again = UniNoteService(svc.config).start()
    assert len(again.served.embeddings) == 36 and not again.completing and steps.notes == []
    assert neighbour_lists(again, ids[:5], 64) == neighbour_lists(svc, ids[:5], 64)


def test_a_crash_mid_completion_loses_no_step_and_the_next_start_resumes(tmp_path, steps):
    steps.fail_at = 1  # the second step crashes: the first one (7 notes) is already in the folder
    cfg = subset_config(tmp_path)
    svc = UniNoteService(cfg).start()
    ids = [n.note_id for n in svc.corpus.notes]
    assert svc.wait_completed(60)
    assert len(svc.served.embeddings) == FIRST + STEP
    assert "27 of 36 notes searchable; adding the rest stopped (simulated crash" in svc.status
    assert svc.neighbours(steps.notes[0][0], k=3).neighbours  # the added step is served
    emb_dir = svc.served.path / "embeddings"
    (emb_dir / ".tmp-shard-00009").mkdir()  # a shard half-written when the process died
    svc.close()

    steps.fail_at, steps.notes = None, []
    again = UniNoteService(cfg).start()
    assert len(again.served.embeddings) == FIRST + STEP  # what was added is served at once
    assert again.wait_completed(60)
    done_before = set(ids[:FIRST]) | set(svc.served.embeddings.note_ids)
    assert sorted(n for step in steps.notes for n in step) == sorted(set(ids) - done_before)
    assert sorted(again.served.embeddings.note_ids) == sorted(ids)
    assert not (emb_dir / ".tmp-shard-00009").exists()


def test_a_corpus_no_bigger_than_the_first_build_is_built_whole(tmp_path, steps):
    svc = UniNoteService(replace(tiny_service_config(tmp_path), first_build_notes=36)).start()
    assert len(svc.served.embeddings) == 36 and not svc.completing and steps.notes == []
    assert not (svc.served.path / "completion.json").exists()


def test_first_build_corpus_keeps_the_pairs_and_qrels_among_its_notes(tmp_path):
    from uninote.data import load_corpus

    corpus = load_corpus(tiny_service_config(tmp_path).corpus)
    sub = first_build_corpus(corpus, 10)
    keep = {n.note_id for n in corpus.notes[:10]}
    assert [n.note_id for n in sub.notes] == [n.note_id for n in corpus.notes[:10]]
    assert all(p.query_id in keep and p.positive_id in keep and set(p.negative_ids) <= keep for p in sub.pairs)
    assert sub.qrels and all(q in keep and set(g) <= keep for q, g in sub.qrels.items())
    assert first_build_corpus(corpus, 0) is corpus and first_build_corpus(corpus, 36) is corpus


@pytest.mark.parametrize("env, value, message", [
    ("UNINOTE_FIRST_BUILD_NOTES", "6.5k", "UNINOTE_FIRST_BUILD_NOTES must be a whole number"),
    ("UNINOTE_FIRST_BUILD_NOTES", "-1", "first_build_notes must be >= 0"),
    ("UNINOTE_COMPLETION_NOTES", "0", "completion_notes >= 1"),
])
def test_bad_first_build_settings_are_clear_errors(monkeypatch, tmp_path, env, value, message):
    monkeypatch.setenv("UNINOTE_HOME", str(tmp_path))
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message):
        ServiceConfig.from_env()


def test_first_build_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UNINOTE_HOME", str(tmp_path))
    assert ServiceConfig.from_env().first_build_notes == 6500
    monkeypatch.setenv("UNINOTE_FIRST_BUILD_NOTES", "1000")
    monkeypatch.setenv("UNINOTE_COMPLETION_NOTES", "250")
    cfg = ServiceConfig.from_env()
    assert (cfg.first_build_notes, cfg.completion_notes) == (1000, 250)
