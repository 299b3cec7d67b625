"""The Milvus backend of ``Retriever`` against Milvus Lite (a file URI under tmp_path): the same
neighbours as the in-process indexes (single- and multi-vector granularities), add/remove written
through, model versions refused, unreachable URIs named, nothing half-built after a failure."""

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


def test_image_and_region_collections_equal_faiss_in_process(small, uri):
    """Multi-vector granularities: one row per vector, grouped by note id; exact/FLAT gives the
    in-process late-interaction lists and scores, with one query vector and with several."""
    local = Retriever(small)
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri))
    queries = small.note_ids[:2] + small.note_ids[-1:]
    n_vectors = {g: {len(local.query_embedding(q).vectors("note", g)) for q in queries} for g in ("image", "region")}
    assert n_vectors["image"] == {1} and min(n_vectors["region"]) > 1  # one query vector and several
    try:
        for q in queries:
            for g in ("image", "region"):
                for strategy in ("exact", "local", "ann"):
                    for dim in (16, 32):
                        same_hits(r.search(q, k=10, dim=dim, granularity=g, strategy=strategy),
                                  local.search(q, k=10, dim=dim, granularity=g, strategy=strategy))
                # an image query: its first photo (and that photo's regions)
                same_hits(r.search(q, k=10, granularity=g, modality="image"),
                          local.search(q, k=10, granularity=g, modality="image"))
                r.shortlist_dim = local.shortlist_dim = 16  # a 16-d Milvus shortlist, local re-rank
                same_hits(r.search(q, k=10, granularity=g, strategy="adaptive"),
                          local.search(q, k=10, granularity=g, strategy="adaptive"))
            # a text query ranks images by its text vector (one query vector, other modality)
            same_hits(r.search(local.query_embedding(q), k=8, granularity="image", modality="text"),
                      local.search(local.query_embedding(q), k=8, granularity="image", modality="text"))
        m = r.milvus
        assert m.row_count("image", 32) == len(small.image) and m.row_count("region", 16) == len(small.region)
        rows = m.client.query(m.name("image", 32), filter=f'note_id == "{N0}"', output_fields=["id", "note_id"])
        assert sorted(x["id"] for x in rows) == [f"{N0}#{k}" for k in range(int(np.sum(small.image_owner == 0)))]
        assert m.client.describe_collection(m.name("region", 32))["properties"]["uninote.kind"] == "flat"
        assert m.client.describe_index(m.name("region", 32), "vec")["index_type"] == "FLAT"
    finally:
        r.close()


def test_multi_vector_search_is_certified_or_left_to_the_local_scan(small, uri, monkeypatch):
    """Several query vectors: the grouping lists grow until no unseen note can beat the k-th score;
    where Milvus's topk cap stops that, the local scan answers (same lists either way)."""
    from uninote.index import milvus as milvus_mod

    local = Retriever(small)
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri))
    q = max(small.note_ids[:20], key=lambda i: int(np.sum(small.region_owner == small.note_ids.index(i))))
    calls = []
    search_groups = milvus_mod.MilvusIndex.search_groups

    def counted(self, *a, **kw):
        calls.append((a[3], kw.get("among") is not None))
        return search_groups(self, *a, **kw)
    monkeypatch.setattr(milvus_mod.MilvusIndex, "search_groups", counted)
    try:
        want = local.search(q, k=5, granularity="region")
        same_hits(r.search(q, k=5, granularity="region"), want)
        assert any(among for _, among in calls)  # maxima missing from a list were filled in Milvus
        calls.clear()
        monkeypatch.setattr(milvus_mod, "MAX_LIMIT", 8)  # no certificate possible within topk 8
        same_hits(r.search(q, k=5, granularity="region"), want)
        assert calls and all(limit <= 8 for limit, _ in calls)  # lists and fills within the cap
        assert r.milvus_search(local.query_embedding(q).regions, "region", 32, 13) is None
    finally:
        r.close()


def test_add_and_remove_write_every_row_of_a_multi_vector_note(small, uri):
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri))
    try:
        r.build(dims=[16, 32], granularities=["image", "region"])
        photo = small.image[small.image_owner == 3][0]  # an image query searches with the first photo
        images = np.stack([photo / np.linalg.norm(photo) + 0.1 * np.random.default_rng(0).standard_normal(32),
                           small.image[0]])
        regions = np.stack([small.region[0], small.region[1], small.region[2]])
        new = QueryEmbedding(note=small.note[7], text=small.text[7], images=images,
                             regions=regions, region_image=np.array([0, 0, 1]))
        r.add("fresh#1", new)  # '#' in a note id: the row ids stay unique
        for d in (16, 32):
            assert r.milvus.row_count("image", d) == len(small.image) + 2
            assert r.milvus.row_count("region", d) == len(small.region) + 3
        assert r.search(N3, k=3, granularity="image", modality="image")[0].note_id == "fresh#1"
        # replaced with one photo and no regions: the rows it no longer has are gone
        images = images[:1]
        r.add("fresh#1", QueryEmbedding(note=small.note[7], text=small.text[7], images=images), replace=True)
        assert r.milvus.row_count("image", 32) == len(small.image) + 1
        assert r.milvus.row_count("region", 32) == len(small.region)
        victim = next(h.note_id for h in r.search(N3, k=3, granularity="image", modality="image") if h.note_id != "fresh#1")
        r.remove(victim)
        lost = int(np.sum(small.image_owner == small.note_ids.index(victim)))
        assert lost and r.milvus.row_count("image", 16) == len(small.image) + 1 - lost
        # a second client on the same file sees the update
        other = Retriever(small, IndexConfig(kind="milvus", uri=uri))
        found = other.milvus.search_groups("image", 32, images, 200, other.config)[0][0]
        assert "fresh#1" in found and victim not in found
        other.close()
        local = Retriever(small)
        local.add("fresh#1", QueryEmbedding(note=small.note[7], text=small.text[7], images=images))
        local.remove(victim)
        for g in ("image", "region"):
            for strategy in ("exact", "local"):
                for modality in ("note", "image"):
                    same_hits(r.search(N3, k=10, granularity=g, strategy=strategy, modality=modality),
                              local.search(N3, k=10, granularity=g, strategy=strategy, modality=modality))
    finally:
        r.close()


def test_a_multi_vector_collection_of_another_model_version_is_refused(small, uri):
    r = Retriever(small, IndexConfig(kind="milvus", uri=uri, collection="shared_mv"))
    r.build(dims=[32], granularities=["image"])
    r.close()
    other = synthetic_embeddings(120, dim=32, n_clusters=5, seed=3, model_version="other-model")
    s = Retriever(other, IndexConfig(kind="milvus", uri=uri, collection="shared_mv"))
    try:
        with pytest.raises(ModelMismatchError, match="shared_mv_image_d32.*'synthetic'.*'other-model'"):
            s.search(N0, k=5, granularity="image")
    finally:
        s.close()


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
        # multi-vector HNSW: grouping lists, re-ranked with exact max-sim from the local tables
        assert r.collection_kind("region", 32) == "hnsw"
        exact = local.search(N1, k=10, granularity="region", strategy="exact")
        got = r.search(N1, k=10, granularity="region", strategy="ann")
        assert len({h.note_id for h in got} & {h.note_id for h in exact}) >= 8
        exact_scores = {h.note_id: h.score for h in exact}
        for h in got:  # the re-rank's scores are the exact ones
            if h.note_id in exact_scores:
                assert h.score == pytest.approx(exact_scores[h.note_id], abs=1e-5)
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


def test_the_milvus_benchmark_compares_image_and_region_lists(small, uri):
    from uninote.bench.milvus import bench_milvus, markdown

    rows = bench_milvus(small, uri, kinds=["flat"], strategies=["exact"], dims=[16], n_queries=3,
                        granularities=["image", "region"], log=lambda *_: None)
    assert [(r["granularity"], r["milvus_index"]) for r in rows] == [("image", "flat"), ("region", "flat")]
    assert all(r["overlap_at_k"] == 1.0 and r["same_scores"] == 1.0 for r in rows)
    assert "| flat | region | exact | 16 | flat |" in markdown(rows)
