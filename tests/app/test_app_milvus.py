"""The app with ``UNINOTE_INDEX_URI`` pointing at a Milvus Lite file: Explore's searches (note,
image and region granularities) go to the served version's Milvus collections and answer what
the in-process index answers."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import PASSWORD, launch_app, tiny_service_config

pytest.importorskip("pymilvus")


@pytest.fixture(scope="module")
def milvus_service(tmp_path_factory):
    from uninote.index.milvus import release_lite
    from uninote.service import UniNoteService

    tmp = tmp_path_factory.mktemp("app-milvus")
    uri = str(tmp / "index.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNINOTE_INDEX_URI", uri)
        config = tiny_service_config(tmp)  # reads $UNINOTE_INDEX_URI
    assert config.index_uri == uri
    svc = UniNoteService(config).start()
    yield svc, uri
    svc.close()
    release_lite(uri)


def test_explore_searches_the_versions_milvus_collections(milvus_service):
    from uninote.index import Retriever

    svc, uri = milvus_service
    r = svc.served.retriever
    assert r.config.kind == "milvus" and r.config.uri == uri
    local = Retriever(svc.served.embeddings)
    for strategy in ("exact", "adaptive", "global+local"):
        for dim in (32, 64):
            got = svc.neighbours("n3", k=6, dim=dim, strategy=strategy)
            want = local.search("n3", k=6, dim=dim, strategy=strategy)
            assert [n.note_id for n in got.neighbours] == [h.note_id for h in want], (strategy, dim)
            # float16 storage (the default): the two sides agree to its precision, not float32's
            np.testing.assert_allclose([n.score for n in got.neighbours], [h.score for h in want], atol=1e-4)
    m = r.milvus
    assert m.row_count("note", 64) == len(svc.corpus) and m.row_count("note", 32) == len(svc.corpus)
    assert m.open("note", 64) == "flat"  # the tiny catalogue: FLAT, exact


def test_explore_serves_image_and_region_queries_from_milvus(milvus_service):
    """Best photo per note and region max-sim: the version's image/region collections in Milvus
    (one row per vector) answer what the in-process index answers."""
    from uninote.index import Retriever

    svc, _ = milvus_service
    r = svc.served.retriever
    local = Retriever(svc.served.embeddings)
    for granularity, strategy, modality in (("image", "exact", "note"), ("image", "exact", "image"),
                                            ("region", "local", "note")):
        got = svc.neighbours("n3", k=6, dim=32, granularity=granularity, strategy=strategy, modality=modality)
        want = local.search("n3", k=6, dim=32, granularity=granularity, strategy=strategy, modality=modality)
        assert got.neighbours and [n.note_id for n in got.neighbours] == [h.note_id for h in want], granularity
        np.testing.assert_allclose([n.score for n in got.neighbours], [h.score for h in want], atol=1e-5)
    emb = svc.served.embeddings
    assert r.milvus.row_count("image", 32) == len(emb.image) and r.milvus.row_count("region", 32) == len(emb.region)


def test_the_program_api_answers_explore_from_milvus(milvus_service):
    from gradio_client import Client

    svc, _ = milvus_service
    demo, url = launch_app(svc)
    try:
        c = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        got = c.submit("n5", k=5, dim=32, granularity="note", strategy="exact",
                       api_name="/neighbours").result(timeout=60)
        c.close()
    finally:
        demo.close()
    want = svc.neighbours("n5", k=5, dim=32)
    assert [n["note_id"] for n in got["neighbours"]] == [n.note_id for n in want.neighbours]
    assert got["model_version"] == svc.served.version


@pytest.mark.browser
def test_explore_in_the_browser_shows_the_milvus_neighbours(milvus_service, browser):
    from app.browser import captions, login
    from uninote.index import Retriever

    svc, _ = milvus_service
    demo, url = launch_app(svc, UNINOTE_USERS=f"ann1:{PASSWORD}")
    try:
        page = login(browser, url, "ann1", PASSWORD, 30_000)
        page.locator("#explore-catalogue .thumbnail-item").first.click()
        page.wait_for_selector("#results-a .caption-label", timeout=30_000)
        shown = captions(page, "#results-a")
        assert "n0" in page.inner_text("#query-card")
        want = Retriever(svc.served.embeddings).search("n0", k=12, dim=64)  # in-process FAISS
        parts = [c.split(" · ") for c in shown]  # "#rank · score · title"
        assert [p[-1] for p in parts] == [svc.note(h.note_id).title for h in want]
        assert [float(p[1]) for p in parts] == pytest.approx([h.score for h in want], abs=1e-3)
        page.close()
    finally:
        demo.close()
