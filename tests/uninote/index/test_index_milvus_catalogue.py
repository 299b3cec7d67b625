"""Milvus Lite against FAISS on a slice of the real catalogue, through the CLI: the FLAT collections
(every granularity) give the exact neighbours (ids and scores) of the in-process index built from
the same shards."""

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")

from uninote.cli.main import main  # noqa: E402
from uninote.embeddings import NoteEmbeddings  # noqa: E402
from uninote.index import IndexConfig, Retriever  # noqa: E402
from uninote.index.milvus import release_lite  # noqa: E402

pytestmark = pytest.mark.integration
SHARED = Path(os.environ.get("UNINOTE_SHARED_DATA", Path(__file__).resolve().parents[3] / ".." / "shared" / "data"))
CATALOGUE = SHARED / "fashion-product-images-small" / "data"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The first 160 catalogue notes embedded by a tiny random model, as memory-mapped shards."""
    from uninote.data import load_corpus
    from uninote.model.testing import tiny_config
    from uninote.model.uninote import UniNoteModel

    files = sorted(CATALOGUE.glob("*.parquet"))
    if not files:
        pytest.skip("shared fashion data not available")
    model = UniNoteModel(tiny_config(embed_dim=64, matryoshka_dims=[16, 32, 64]))
    out = tmp_path_factory.mktemp("emb") / "fashion"
    model.embed_corpus(load_corpus(files[0], limit=160), progress=False).save(out)
    return out


def test_milvus_flat_equals_faiss_exact_on_the_catalogue(shards, tmp_path, capsys):
    uri = str(tmp_path / "milvus.db")
    try:
        assert main(["index", "build", "--embeddings", str(shards), "--out", str(tmp_path / "index"),
                     "--milvus", uri, "--dims", "16,64", "--granularities", "note,text,image,region"]) == 0
        out = capsys.readouterr().out
        emb = NoteEmbeddings.load(shards)
        assert "_note_d64 flat 160 rows" in out and "_text_d16 flat 160 rows" in out
        assert f"_image_d16 flat {len(emb.image)} rows" in out and f"_region_d64 flat {len(emb.region)} rows" in out
        faiss_r = Retriever(emb)
        milvus_r = Retriever.load(tmp_path / "index")  # the folder remembers its Milvus
        assert milvus_r.config.uri == uri
        try:
            for q in emb.note_ids[::7]:
                for g in ("note", "text", "image", "region"):  # image/region: grouped by note in Milvus
                    for dim in (16, 64):
                        a = milvus_r.search(q, k=10, dim=dim, granularity=g, strategy="exact")
                        b = faiss_r.search(q, k=10, dim=dim, granularity=g, strategy="exact")
                        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
                        for x, y in zip(a, b):  # ids equal, up to notes whose scores tie
                            assert x.note_id == y.note_id or abs(x.score - y.score) < 1e-5, (q, g, dim)
                milvus_r.shortlist_dim = faiss_r.shortlist_dim = 16
                assert [h.note_id for h in milvus_r.search(q, k=10, strategy="adaptive")] == \
                    [h.note_id for h in faiss_r.search(q, k=10, strategy="adaptive")]
        finally:
            milvus_r.close()
        # `index search --milvus` on a FAISS-only folder prints the FAISS neighbours
        q = emb.note_ids[3]
        assert main(["index", "build", "--embeddings", str(shards), "--out", str(tmp_path / "faiss"),
                     "--dims", "64", "--granularities", "note"]) == 0
        capsys.readouterr()
        assert main(["index", "search", "--index", str(tmp_path / "faiss"), "--note", q, "--k", "5"]) == 0
        local = capsys.readouterr().out
        assert main(["index", "search", "--index", str(tmp_path / "faiss"), "--note", q, "--k", "5",
                     "--milvus", uri]) == 0
        assert [ln.split()[2] for ln in capsys.readouterr().out.splitlines()] == \
            [ln.split()[2] for ln in local.splitlines()]
    finally:
        release_lite(uri)


def test_an_unreachable_milvus_fails_the_build_before_embedding(shards, tmp_path, capsys):
    t = tmp_path / "out"
    assert main(["index", "build", "--embeddings", str(shards), "--out", str(t),
                 "--milvus", "http://127.0.0.1:9"]) == 2
    assert "no Milvus answers at 'http://127.0.0.1:9'" in capsys.readouterr().err
    assert not t.exists()
    assert main(["index", "build", "--embeddings", str(shards)]) == 2
    assert "--out DIR" in capsys.readouterr().err
