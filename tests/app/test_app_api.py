"""The program API (app/api.py) through ``gradio_client`` against the real app on loopback.

Every call is bounded (``Job.result(timeout=...)``): a hung server fails the test instead of
hanging the suite. Results are checked against the service called directly; refusals against
the exact sentence the caller gets back.
"""

from __future__ import annotations


import pytest
import requests

from conftest import PASSWORD, add_version, launch_app

CALL_TIMEOUT = 60  # seconds for one API call, upload encoding included


def client(url: str, user: str | None = "ann12"):
    from gradio_client import Client

    return Client(url, auth=(user, PASSWORD) if user else None, verbose=False, download_files=False,
                  analytics_enabled=False)


def call(c, api_name: str, *args, **kwargs):
    return c.submit(*args, api_name=api_name, **kwargs).result(timeout=CALL_TIMEOUT)


@pytest.fixture(scope="module")
def api(live_app):
    url, service = live_app
    c = client(url)
    yield c, service
    c.close()


@pytest.fixture(scope="module")
def open_app(service):
    """The same app launched without logins (UNINOTE_USERS unset): nobody is signed in."""
    demo, url = launch_app(service, UNINOTE_USERS=None)
    yield url
    demo.close()


def test_neighbours_by_id_are_the_services(api):
    c, service = api
    got = call(c, "/neighbours", "n3", k=5, dim=32, granularity="note", strategy="exact")
    want = service.neighbours("n3", k=5, dim=32)
    assert got["query"] == "n3" and got["model_version"] == service.served.version
    assert [(n["note_id"], n["rank"]) for n in got["neighbours"]] == \
        [(n.note_id, n.rank) for n in want.neighbours]
    assert [n["score"] for n in got["neighbours"]] == pytest.approx([n.score for n in want.neighbours])
    assert got["neighbours"][0]["title"] == service.note(want.neighbours[0].note_id).title
    assert got["settings"] == {"k": 5, "dim": 32, "granularity": "note", "modality": "note",
                               "strategy": "exact"}
    assert got["latency_ms"] > 0


def test_neighbours_default_to_the_full_dim(api):
    c, service = api
    got = call(c, "/neighbours", "n3")
    assert got["settings"]["dim"] == service.served.embeddings.dim and len(got["neighbours"]) == 10


def test_neighbours_at_another_version_leave_the_served_one(api):
    """/neighbours with `version` searches a registered version read-only: its own ranking, its
    name in the answer, and the served version (and what it answers) unchanged."""

    c, service = api
    served = service.served.version
    other = add_version(service, "api-other", seed=11)
    got = call(c, "/neighbours", "n3", k=5, dim=32, version=other)
    want = service.neighbours("n3", k=5, dim=32, version=other)
    assert got["model_version"] == other
    assert [n["note_id"] for n in got["neighbours"]] == [n.note_id for n in want.neighbours]
    assert [n["score"] for n in got["neighbours"]] == pytest.approx([n.score for n in want.neighbours])
    assert want.neighbours != service.neighbours("n3", k=5, dim=32).neighbours  # another model
    assert service.served.version == served and service.store.active_version().version == served
    assert call(c, "/neighbours", "n3", k=5, dim=32)["model_version"] == served


def test_neighbours_at_an_unknown_version_say_which_exist(api):
    from gradio_client.exceptions import AppError

    c, service = api
    with pytest.raises(AppError) as err:
        call(c, "/neighbours", "n3", version="v-nope")
    known = ", ".join(v.version for v in service.versions())
    assert str(err.value) == f"unknown model version 'v-nope': the store knows {known}"


def test_neighbours_of_an_uploaded_note(api):
    from gradio_client import handle_file

    c, service = api
    note = service.note("n3")
    photo = service.corpus.image_path(note, 0)
    got = call(c, "/neighbours_of_upload", [handle_file(str(photo))], title=note.title, k=4,
               modality="image", granularity="image")
    want = service.neighbours(service.encode_upload([photo.read_bytes()], note.title), k=4,
                              modality="image", granularity="image")
    assert got["query"].startswith("upload:") and got["model_version"] == service.served.version
    assert [n["note_id"] for n in got["neighbours"]] == [n.note_id for n in want.neighbours]
    assert got["neighbours"][0]["score"] == pytest.approx(1.0, abs=1e-3)  # its own photo is there


def test_next_pair_then_grade_with_a_comment(api):
    c, service = api
    pair = call(c, "/next_pair")
    assert {"task_id", "query_id", "candidate_id", "query_title", "left"} <= set(pair)
    out = call(c, "/grade", pair["query_id"], pair["candidate_id"], 2, pair["task_id"],
               comment="same kind, other colour")
    assert out["annotator"] == "ann12" and out["grade"] == 2
    stored = {(j.query_id, j.candidate_id): j for j in service.store.judgments(annotator="ann12")}
    j = stored[(pair["query_id"], pair["candidate_id"])]
    assert (j.grade, j.comment, j.task_id) == (2, "same kind, other colour", pair["task_id"])
    assert call(c, "/next_pair")["task_id"] != pair["task_id"]


@pytest.mark.parametrize("grade, message", [
    (2.7, "grade must be an integer 0-3, got 2.7"),
    (4, "grade must be 0, 1, 2 or 3, got 4"),
    (-1, "grade must be 0, 1, 2 or 3, got -1"),
    ("2", "grade must be an integer 0-3, got '2'"),
])
def test_a_bad_grade_is_refused_and_nothing_is_stored(api, grade, message):
    from gradio_client.exceptions import AppError

    c, service = api
    with pytest.raises(AppError) as err:
        call(c, "/grade", "n5", "n6", grade)
    assert str(err.value) == message
    assert not [j for j in service.store.judgments(annotator="ann12")
                if (j.query_id, j.candidate_id) == ("n5", "n6")]


@pytest.mark.parametrize("args, kwargs, message", [
    (("nope",), {}, "no note with id 'nope' in corpus corpus"),
    (("n0",), {"dim": 100}, "dim 100 is not served: the model works at 16, 32, 64"),
    (("n0",), {"k": 0}, "k must be between 1 and 100, got 0"),
    (("n0",), {"strategy": "fast"}, "unknown strategy 'fast': expected one of exact, adaptive, local, "
                                    "global+local"),
])
def test_bad_search_inputs_say_why(api, args, kwargs, message):
    from gradio_client.exceptions import AppError

    c, _ = api
    with pytest.raises(AppError) as err:
        call(c, "/neighbours", *args, **kwargs)
    assert str(err.value) == message


def test_grading_an_unknown_note_says_which(api):
    from gradio_client.exceptions import AppError

    c, _ = api
    with pytest.raises(AppError, match="no note with id 'zz'"):
        call(c, "/grade", "n0", "zz", 1)


def test_versions_list_the_served_one(api):
    c, service = api
    got = call(c, "/versions")
    assert [v["version"] for v in got] == [v.version for v in service.versions()]
    assert [v["version"] for v in got if v["served"]] == [service.served.version]


def test_without_a_login_searches_work_and_grading_says_sign_in(open_app, service):
    from gradio_client.exceptions import AppError

    c = client(open_app, user=None)
    try:
        assert call(c, "/neighbours", "n0", k=3)["neighbours"]
        for api_name, args in (("/next_pair", ()), ("/grade", ("n5", "n6", 1))):
            with pytest.raises(AppError, match="^not signed in: grading needs a login"):
                call(c, api_name, *args)
    finally:
        c.close()
    assert not [j for j in service.store.judgments() if (j.query_id, j.candidate_id) == ("n5", "n6")]


@pytest.mark.parametrize("path", ["/monitoring", "/monitoring/summary", "/openapi.json",
                                  "/gradio_api/openapi.json"])
def test_monitoring_and_schema_need_a_login(live_app, path):
    url, _ = live_app
    assert requests.get(url + path, timeout=10, allow_redirects=False).status_code == 401
    s = requests.Session()
    assert s.post(f"{url}/login", data={"username": "ann13", "password": PASSWORD}, timeout=10).ok
    r = s.get(url + path, timeout=10, allow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.text[:200])


def test_the_program_api_is_in_the_schema(live_app):
    url, _ = live_app
    s = requests.Session()
    assert s.post(f"{url}/login", data={"username": "ann13", "password": PASSWORD}, timeout=10).ok
    paths = s.get(f"{url}/gradio_api/openapi.json", timeout=10).json()["paths"]
    for name in ("neighbours", "neighbours_of_upload", "next_pair", "grade", "versions"):
        assert any(p.rstrip("/").endswith("/" + name) for p in paths), (name, sorted(paths))


@pytest.mark.parametrize("photo", ["corpus-image", "database", "plain-string"])
def test_an_upload_must_be_a_file_the_client_uploaded(live_app, photo):
    """A request naming a server file as a photo (plain HTTP, no upload) is refused unread."""
    url, service = live_app
    path = {"corpus-image": str(service.corpus.image_path(service.note("n3"), 0)),
            "database": str(service.config.home / "annotations.db"),
            "plain-string": "/etc/passwd"}[photo]
    value = path if photo == "plain-string" else {"path": path}
    s = requests.Session()
    assert s.post(f"{url}/login", data={"username": "ann13", "password": PASSWORD}, timeout=10).ok
    r = s.post(f"{url}/gradio_api/run/neighbours_of_upload", timeout=30,
               json={"data": [[value], "", "", 3, None, "note", "note", "exact"]})
    assert r.status_code >= 400
    assert r.json()["error"] == "photo 1 is not an uploaded file: send each photo with " \
                                "gradio_client.handle_file(path)"
