"""UniNoteService without a browser: uploads, version switching, search bookkeeping, auth."""

from __future__ import annotations

import io
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_service_config
from uninote.errors import ConfigError, ImageError, UniNoteError
from uninote.service import Neighbour, UniNoteService, overlap_at_k


def png_bytes(size=(40, 40), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width=60000, height=60000) -> bytes:
    """A tiny, valid-looking PNG whose header declares a huge canvas."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def tiff_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    return buf.getvalue()


def uploads(service) -> list:
    return sorted(p for p in service.config.uploads_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize("bad, message", [
    (lambda: png_bytes()[:-30], "truncated PNG"),
    (lambda: bomb_png(), "pixels"),
    (lambda: tiff_bytes(), "not an image we can read"),
    (lambda: b"", "empty"),
    (lambda: b"GIF89a" + b"\0" * 20, "truncated GIF"),
    (lambda: png_bytes((1600, 1600)) + b"\0" * (9 * 1024 * 1024), "over the limit"),
])
def test_bad_uploads_are_refused_and_nothing_is_stored(service, bad, message):
    before = uploads(service)
    with pytest.raises(ImageError, match=message):
        service.encode_upload([png_bytes(), bad()], title="two photos, one bad")
    assert uploads(service) == before


def test_good_upload_is_stored_once_and_searchable(service):
    data = png_bytes(colour=(30, 40, 200))
    up = service.encode_upload([data], title="blue thing")
    again = service.encode_upload([data], title="blue thing")
    assert up.photos == again.photos and all(p.startswith(str(service.config.uploads_dir)) for p in up.photos)
    result = service.neighbours(up, k=5, granularity="image", modality="image")
    assert [n.rank for n in result.neighbours] == [1, 2, 3, 4, 5]
    scores = [n.score for n in result.neighbours]
    assert scores == sorted(scores, reverse=True)


def test_too_many_photos_or_nothing_is_refused(service):
    with pytest.raises(ImageError, match="at most"):
        service.encode_upload([png_bytes()] * 5)
    with pytest.raises(ImageError, match="at least one photo"):
        service.encode_upload([], title="  ")


def test_neighbours_match_brute_force(service):
    from uninote.index.scoring import maxsim_scores, top_k

    emb = service.served.embeddings.truncate(32)
    row = emb.row("n3")
    scores = maxsim_scores(emb.note[row][None], emb.note, None, len(emb))
    want = [emb.note_ids[i] for i in top_k(scores, 6, exclude=[row])]
    got = service.neighbours("n3", k=6, dim=32).neighbours
    assert [n.note_id for n in got] == want
    np.testing.assert_allclose([n.score for n in got], scores[[emb.row(i) for i in want]], rtol=1e-5)


def test_overlap_at_k():
    def hits(ids):
        return [Neighbour(i, r + 1, 0.0, "", None) for r, i in enumerate(ids)]
    assert overlap_at_k(hits("abcd"), hits("abcd")) == 1.0
    assert overlap_at_k(hits("abcd"), hits("cdef")) == 0.5
    assert overlap_at_k([], []) == 0.0


def test_unknown_note_and_bad_grade_are_clear_errors(service):
    with pytest.raises(UniNoteError, match="no note with id 'nope'"):
        service.neighbours("nope")
    with pytest.raises(UniNoteError, match="grade must be"):
        service.grade("alice", "n0", "n1", 7)
    with pytest.raises(UniNoteError, match="sign in"):
        service.grade(None, "n0", "n1", 2)


def test_switch_version_without_restart_inflight_search_finishes_on_old(tmp_path):
    svc = UniNoteService(tiny_service_config(tmp_path)).start()
    old = svc.served
    # a second version: same tiny architecture, another seed
    svc.config.model_config = dict(svc.config.model_config, seed=7)
    model = svc._make_model("config")
    folder = svc.config.versions_root / "v2"
    emb = model.embed_corpus(svc.corpus, progress=False)
    emb.model_version = "v2"
    svc._write_version(folder, "config", model, emb)
    svc.store.register_model_version("v2", str(folder), parent=old.version,
                                     metrics={"warnings": ["graders disagree: estimated grader error rate 0.24"]})

    entered, release = threading.Event(), threading.Event()
    real_search = old.retriever.search

    def slow_search(*a, **k):
        entered.set()
        release.wait(10)
        return real_search(*a, **k)

    object.__setattr__(old, "retriever", type("R", (), {"search": staticmethod(slow_search),
                                                         "indexes_for": old.retriever.indexes_for})())
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", svc.neighbours("n0", k=3)))
    t.start()
    assert entered.wait(10)
    svc.activate("v2")  # while the old search is still running
    assert svc.neighbours("n0", k=3).version == "v2"
    release.set()
    t.join(10)
    assert out["r"].version == old.version
    assert svc.store.active_version().version == "v2"
    assert UniNoteService(svc.config).start().served.version == "v2"  # a restart keeps serving v2
    from app.dashboard import versions_table

    table = versions_table(svc).set_index("version")  # the Trainer tab's version list shows RL warnings
    assert table.loc["v2", "warnings"].startswith("graders disagree") and table.loc[old.version, "warnings"] == ""


def test_umap_is_cached_per_version_dim_granularity(tmp_path):
    service = UniNoteService(tiny_service_config(tmp_path)).start()  # no other test drew its maps
    ids, xy = service.umap(16, "note")
    assert xy.shape == (len(service.corpus), 2) and np.isfinite(xy).all()
    assert service.umap_cached(16, "note") and not service.umap_cached(32, "note")
    ids2, xy2 = service.umap(16, "note")
    assert ids2 == ids and np.array_equal(xy, xy2)


def test_users_from_env_and_file(tmp_path, monkeypatch):
    from app.auth import load_users, make_auth

    f = tmp_path / "users.txt"
    f.write_text("# team\ncarol:secret\n\n")
    monkeypatch.setenv("UNINOTE_USERS", "alice:pw1,bob:pw:2")
    monkeypatch.setenv("UNINOTE_USERS_FILE", str(f))
    users = load_users()
    assert users == {"alice": "pw1", "bob": "pw:2", "carol": "secret"}
    check = make_auth(users)
    assert check("bob", "pw:2") and not check("bob", "pw") and not check("eve", "x")
    monkeypatch.setenv("UNINOTE_USERS", "alice")
    with pytest.raises(ConfigError, match="user:password"):
        load_users()


def test_served_version_is_evaluated_once_and_plotted(tmp_path):
    from app.plots import quality_vs_bytes

    svc = UniNoteService(tiny_service_config(tmp_path)).start()
    assert svc.eval_results() == []
    svc.evaluate_served(max_queries=10)
    rows = svc.eval_results()
    assert {(r["granularity"], r["dim"]) for r in rows if r["query_modality"] == "note"} == \
        {(g, d) for g in ("note", "text", "image", "region") for d in (16, 32, 64)}
    fig = quality_vs_bytes(rows, "ndcg@10", "note")
    assert sorted(t.name for t in fig.data) == ["image", "note", "region", "text"]
    assert list(fig.data[0].x) == [64, 128, 256]  # 4 bytes x dim
    active = svc.store.active_version()
    assert any(k.startswith("note/note/ndcg@10@") for k in active.metrics)


def test_spaces_mode_uses_hugging_face_login_not_passwords(service, monkeypatch):
    from app.factory import build_demo, launch_settings

    for key, value in {"SYSTEM": "spaces", "SPACE_ID": "someone/uninote", "OAUTH_CLIENT_ID": "id", "OAUTH_CLIENT_SECRET": "secret",
                       "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": "https://huggingface.co"}.items():
        monkeypatch.setenv(key, value)  # what Spaces sets when the README says hf_oauth: true
        if key.startswith(("OAUTH", "OPENID")):
            monkeypatch.setattr(f"gradio.oauth.{key}", value)  # gradio reads these at import
    monkeypatch.setenv("UNINOTE_USERS", "alice:pw")
    demo = build_demo(service)
    assert demo.expects_oauth  # a gr.LoginButton is on the Annotate tab
    settings = launch_settings(service)
    assert "auth" not in settings
    assert settings["allowed_paths"] == [str(service.config.thumbs_dir), str(service.config.uploads_dir)]


def test_rl_run_from_app_grades_becomes_a_served_version(tmp_path):
    """Trainer tab flow end to end: grades -> enqueue_rl -> `uninote worker --once` -> activate."""
    from uninote.cli.main import main

    svc = UniNoteService(tiny_service_config(tmp_path)).start()
    base = svc.served.version
    for user in ("a", "b"):
        for _ in range(30):
            task = svc.next_pair(user)
            q, c = svc.note(task.query_id), svc.note(task.candidate_id)
            grade = 3 if q.meta == c.meta else (2 if q.meta["kind"] == c.meta["kind"] else 0)
            svc.grade(user, task.query_id, task.candidate_id, grade, {"task_id": task.id})
    job_id = svc.enqueue_rl({"steps": 5})
    assert main(["worker", "--db", svc.config.db_url, "--versions-root", str(svc.config.versions_root),
                 "--once", "--device", "cpu"]) == 0
    job = svc.jobs()[0]
    assert (job.id, job.status) == (job_id, "succeeded"), job.error
    new = job.result["version"]
    assert [v.version for v in svc.versions() if v.parent == base] == [new]
    svc.activate(new)
    assert svc.neighbours("n0", k=3).version == new
    assert svc.eval_results(new)  # the worker's eval.json feeds the dashboard chart


def test_label_queue_refills_from_the_active_version_until_every_note_was_a_query(tmp_path):
    """An empty queue is not the end of annotation: the next request plans new queries from the
    version being served, and only when every note has been a query is there nothing left."""
    from dataclasses import replace

    cfg = replace(tiny_service_config(tmp_path), label_queries=4)
    svc = UniNoteService(cfg).start()
    assert len(svc.queue.queries()) == 4  # the first fill
    version = svc.served.version
    fills, seen = [], set()
    while (task := svc.next_pair("solo")) is not None:
        if task.query_id not in seen:
            seen.add(task.query_id)
            fills.append(len(svc.queue.queries()))
        assert task.model_version == version  # planned from the version being served
        svc.grade("solo", task.query_id, task.candidate_id, 1, {"task_id": task.id})
    assert svc.queue.queries() == set(svc.served.embeddings.note_ids)
    assert len(svc.corpus) == 36 and max(fills) == 36 and min(fills) == 4  # grew 4 at a time
    assert all(b - a in (0, 4) for a, b in zip(fills, fills[1:]))
    pairs = [(j.query_id, j.candidate_id) for j in svc.store.judgments()]
    assert len(pairs) == len(set(pairs))  # refills never re-plan a graded pair
    assert svc.next_pair("solo") is None


@pytest.mark.parametrize("grade", [2.7, 2.0, "2", True, np.float64(1.5)])
def test_service_refuses_a_grade_that_is_not_an_integer_0_to_3(service, grade):
    from annotations.errors import InvalidGrade

    before = len(service.store.judgments(annotator="strict"))
    with pytest.raises(InvalidGrade, match="grade must be an integer 0-3"):
        service.grade("strict", "n7", "n8", grade)
    assert len(service.store.judgments(annotator="strict")) == before == 0


def test_service_stores_numpy_integer_grades_as_they_are(service):
    assert service.grade("strict-np", "n7", "n8", np.int64(3)).grade == 3
