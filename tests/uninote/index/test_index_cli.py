"""`uninote index build|info|search` on embeddings written by NoteEmbeddings.save."""

import pytest

from uninote.cli.main import main
from uninote.index import Retriever
from uninote.index.synthetic import synthetic_embeddings


@pytest.fixture
def emb_dir(tmp_path):
    e = synthetic_embeddings(200, dim=96, seed=4, model_version="v-test")
    return e, e.save(tmp_path / "emb")


def test_build_info_search(emb_dir, tmp_path, capsys):
    e, d = emb_dir
    out = tmp_path / "idx"
    assert main(["index", "build", "--embeddings", str(d), "--out", str(out), "--dims", "32,96",
                 "--kind", "hnsw", "--granularities", "note,region"]) == 0
    text = capsys.readouterr().out
    assert "note    d=32   hnsw" in text and "region  d=96   hnsw" in text
    r = Retriever.load(out, model_version="v-test")
    expected = [h.note_id for h in r.search("n00007", k=3, dim=32, strategy="ann")]
    assert main(["index", "search", "--index", str(out), "--note", "n00007", "--k", "3", "--dim", "32",
                 "--strategy", "ann"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[-1] for ln in lines] == expected


def test_search_refuses_other_model_version(emb_dir, tmp_path, capsys):
    _, d = emb_dir
    out = tmp_path / "idx"
    main(["index", "build", "--embeddings", str(d), "--out", str(out), "--dims", "96"])
    assert main(["index", "search", "--index", str(out), "--note", "n00001", "--model-version", "v-other"]) == 2
    assert "built with model version 'v-test'" in capsys.readouterr().err


def test_build_needs_a_source(tmp_path, capsys):
    assert main(["index", "build", "--out", str(tmp_path / "x")]) == 2
    assert "--embeddings" in capsys.readouterr().err


def test_build_from_model_and_corpus_then_refuse_other_model(tmp_path, capsys):
    """End to end with a tiny random model: embed via load_model(...).embed_corpus, build, check version."""
    torch = pytest.importorskip("torch")
    from uninote.model import UniNoteModel
    from uninote.model.testing import make_synthetic_corpus, tiny_config

    torch.manual_seed(0)
    corpus = make_synthetic_corpus(tmp_path / "corpus", n_notes=24)
    model_dir = UniNoteModel(tiny_config()).save_pretrained(tmp_path / "model")
    out = tmp_path / "idx"
    assert main(["index", "build", "--model", str(model_dir), "--corpus", str(corpus), "--out", str(out),
                 "--dims", "8,32"]) == 0
    version = UniNoteModel.from_pretrained(model_dir).version
    r = Retriever.load(out, model_version=version)
    assert len(r) == 24 and r.full_dim == 32
    first = r.note_ids[0]
    assert [h.note_id for h in r.search(first, k=3, dim=8)]
    other = UniNoteModel(tiny_config(hidden_dim=48)).save_pretrained(tmp_path / "other")
    capsys.readouterr()
    emb_dir = tmp_path / "emb"
    import argparse

    from uninote.cli.index_cmd import load_embeddings

    load_embeddings(argparse.Namespace(model=str(model_dir), corpus=str(corpus), embeddings=None)).save(emb_dir)
    assert main(["index", "build", "--model", str(other), "--embeddings", str(emb_dir), "--out",
                 str(tmp_path / "idx2")]) == 2
    assert "written by model version" in capsys.readouterr().err
