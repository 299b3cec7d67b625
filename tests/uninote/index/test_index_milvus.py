"""The Milvus backend of ``Retriever`` against Milvus Lite (a file URI under tmp_path): the same
neighbours as the in-process indexes, add/remove written through, model versions refused,
unreachable URIs named, nothing half-built after a failure."""

import socket
import time

import numpy as np
import pytest

pytest.importorskip("pymilvus")

from uninote.embeddings import QueryEmbedding  # noqa: E402
from uninote.errors import ConfigError, ModelMismatchError, UniNoteError  # noqa: E402
from uninote.index import IndexConfig, Retriever  # noqa: E402
from uninote.index.milvus import MilvusUnavailableError, collection_base, release_lite  # noqa: E402
from uninote.index.synthetic import synthetic_embeddings  # noqa: E402

N0, N1, N3, N5 = "n00000", "n00001", "n00003", "n00005"


@pytest.fixture(scope="module")
def small():
    """120 clustered notes at full dim 32 (dims 32 only: one collection per granularity)."""
    return synthetic_embeddings(120, dim=32, n_clusters=5, seed=3)


@pytest.fixture
def uri(tmp_path):
    path = str(tmp_path / "milvus.db")
    yield path
    release_lite(path)  # stops the in-process Lite server of this file


def same_hits(a, b, atol=1e-5):
    """Equal lists up to float tolerance; notes whose scores tie may swap places."""
    assert len(a) == len(b)
    np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=atol)
    for x, y in zip(a, b):
        if x.note_id != y.note_id:
            tied = [h.note_id for h in b if abs(h.score - x.score) <= atol]
            assert x.note_id in tied, (x, y)


def test_milvus_exact_equals_faiss_exact_for_every_strategy(small, uri):
    local = Retriever(small)
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri))
    try:
        for q in small.note_ids[:2] + small.note_ids[-1:]:
            for g in ("note", "text"):
                same_hits(r.search(q, k=10, granularity=g, strategy="exact"),
                          local.search(q, k=10, granularity=g, strategy="exact"))
                same_hits(r.search(q, k=10, granularity=g, strategy="ann"),
                          local.search(q, k=10, granularity=g, strategy="ann"))
            # dims below the full dim get their own collections; adaptive shortlists in Milvus
            same_hits(r.search(q, k=5, dim=16, strategy="exact"), local.search(q, k=5, dim=16, strategy="exact"))
            r.shortlist_dim = local.shortlist_dim = 16
            same_hits(r.search(q, k=10, strategy="adaptive"), local.search(q, k=10, strategy="adaptive"))
            # region search stays in-process
            same_hits(r.search(q, k=5, granularity="region", strategy="local"),
                      local.search(q, k=5, granularity="region", strategy="local"))
        m = r.milvus
        names = {m.name("note", 32), m.name("note", 16), m.name("text", 32)}
        assert all(m.client.has_collection(n) for n in names)
        assert m.row_count("note", 32) == len(small)
        # the collections record the model version and the kind (FLAT at this size)
        props = m.client.describe_collection(m.name("note", 32))["properties"]
        assert props["uninote.model_version"] == small.model_version and props["uninote.kind"] == "flat"
        assert m.client.describe_index(m.name("note", 32), "vec")["index_type"] == "FLAT"
    finally:
        r.close()


def test_add_and_remove_go_through_to_the_collections(small, uri):
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri))
    try:
        r.build(dims=[16, 32], granularities=["note", "text"])
        q = small.note[5] + 0.01
        new = QueryEmbedding(note=q, text=small.text[5])
        r.add("fresh", new)
        for d in (16, 32):
            assert r.milvus.row_count("note", d) == len(small) + 1
        assert r.search(N5, k=3)[0].note_id == "fresh"
        victim = r.search(N5, k=3)[1].note_id
        r.remove(victim)
        assert r.milvus.row_count("text", 16) == len(small)
        # a second client on the same file (another app replica) sees the update
        other = Retriever(small, IndexConfig(kind="milvus", uri=uri))
        ids = [i for i, _ in zip(*other.milvus.search("note", 32, small.note[5], 10, other.config))]
        assert "fresh" in ids and victim not in ids
        other.close()
        # the result equals the in-process retriever given the same updates
        local = Retriever(small)
        local.add("fresh", new)
        local.remove(victim)
        for g in ("note", "text"):
            same_hits(r.search(N5, k=10, granularity=g), local.search(N5, k=10, granularity=g))
        with pytest.raises(UniNoteError, match="already indexed"):
            r.add("fresh", new)
    finally:
        r.close()


def test_a_collection_of_another_model_version_is_refused(small, uri):
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri, collection="shared_index"))
    r.build(dims=[32], granularities=["note"])
    r.close()
    other = synthetic_embeddings(120, dim=32, n_clusters=5, seed=3, model_version="other-model")
    s = Retriever(other, IndexConfig(kind="milvus", uri=uri, collection="shared_index"))
    try:
        with pytest.raises(ModelMismatchError, match="built with model version 'synthetic'.*'other-model'"):
            s.search(N0, k=5)
        with pytest.raises(ModelMismatchError):  # nor is it overwritten by a build
            s.build(dims=[32], granularities=["note"])
    finally:
        s.close()
    # by default each version has its own collections, so both are served side by side
    assert collection_base("synthetic") != collection_base("other-model")
    t = Retriever(other, IndexConfig(kind="milvus", uri=uri))
    try:
        assert len(t.search(N0, k=5)) == 5
    finally:
        t.close()


def test_a_failed_build_leaves_the_collection_in_service(small, uri, monkeypatch):
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri))
    try:
        r.build(dims=[32], granularities=["note"])
        before = r.search(N3, k=5)
        served = r.milvus.client.describe_collection(r.milvus.name("note", 32))["collection_name"]

        def broken(*a, **k):
            raise RuntimeError("disk full")
        monkeypatch.setattr(r.milvus.client, "create_index", broken)
        with pytest.raises(UniNoteError, match="failed.*disk full.*unchanged"):
            r.build(dims=[32], granularities=["note"])
        monkeypatch.undo()
        left = [c for c in r.milvus.client.list_collections() if c.startswith(r.milvus.name("note", 32))]
        assert left == [served]  # the half-built physical collection was dropped
        assert r.search(N3, k=5) == before
        r.build(dims=[32], granularities=["note"])  # a rebuild swaps the alias and drops the old one
        now = r.milvus.client.describe_collection(r.milvus.name("note", 32))["collection_name"]
        assert now != served and not r.milvus.client.has_collection(served)
        assert r.search(N3, k=5) == before
    finally:
        r.close()


def test_an_unreachable_uri_fails_fast_naming_it(small, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with pytest.raises(MilvusUnavailableError, match=f"no Milvus answers at '{uri}'"):
        Retriever(small, IndexConfig(kind="milvus", uri=uri, milvus_timeout=2))
    assert time.perf_counter() - t0 < 10
    with pytest.raises(MilvusUnavailableError, match="no-such-dir"):
        Retriever(small, IndexConfig(kind="milvus", uri=str(tmp_path / "no-such-dir" / "x.db")))
    with pytest.raises(ConfigError, match="needs uri"):
        IndexConfig(kind="milvus").validate()


def test_hnsw_collections_serve_ann_and_adaptive_and_leave_exact_local(small, uri):
    local = Retriever(small, IndexConfig(kind="hnsw"))
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri, milvus_kind="hnsw"))
    try:
        assert r.collection_kind("note", 32) == "hnsw"
        assert r.milvus.client.describe_index(r.milvus.name("note", 32), "vec")["index_type"] == "HNSW"
        exact = local.search(N1, k=10, strategy="exact")
        same_hits(r.search(N1, k=10, strategy="exact"), exact)  # the local scan
        got = {h.note_id for h in r.search(N1, k=10, strategy="ann")}
        assert len(got & {h.note_id for h in exact}) >= 8  # HNSW at 120 notes: near exact
    finally:
        r.close()


def test_concurrent_first_searches_build_the_collection_once(small, uri):
    import threading

    r = Retriever(small, IndexConfig(kind="milvus", uri=uri))
    try:
        results, errors = [], []

        def search():
            try:
                results.append([h.note_id for h in r.search(N1, k=5, dim=24)])
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        threads = [threading.Thread(target=search) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors and len(results) == 4 and all(x == results[0] for x in results)
        name = r.milvus.name("note", 24)
        assert [c for c in r.milvus.client.list_collections() if c.startswith(name)] == \
            [r.milvus.client.describe_collection(name)["collection_name"]]
        # a collection dropped under a running app: the error names it and the URI
        r.milvus.client.drop_alias(name)
        with pytest.raises(UniNoteError, match=f"{name}.*{uri}"):
            r.search(N1, k=5, dim=24)
    finally:
        r.close()


def test_pymilvus_is_imported_only_when_milvus_is_asked_for():
    import subprocess
    import sys

    code = ("import sys\nfrom uninote.index import Retriever\nfrom uninote.index.synthetic import synthetic_embeddings\n"
            "r = Retriever(synthetic_embeddings(30, dim=16))\nr.search('n00001', k=3, strategy='ann')\n"
            "print('pymilvus' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
