"""The train-sft and embed commands end to end on a tiny model."""

import json

import numpy as np
import pytest

from uninote.cli.main import main
from uninote.embeddings import NoteEmbeddings
from uninote.model.testing import make_synthetic_corpus

TINY = ["--text-tower", "tiny", "--image-tower", "tiny", "--embed-dim", "32", "--matryoshka-dims", "8", "16", "32",
        "--image-size", "32", "--n-regions", "2", "--hidden-dim", "32", "--batch-size", "8", "--max-steps", "3"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))


def test_train_then_embed(tmp_path, capsys):
    corpus = make_synthetic_corpus(tmp_path / "c", n_notes=24)
    assert main(["train-sft", "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--quiet", *TINY,
                 "--loss-weights", '{"region": 0}']) == 0
    cfg = json.loads((tmp_path / "m" / "training_config.json").read_text())
    assert cfg["loss_weights"]["region"] == 0 and cfg["loss_weights"]["note"] == 1.0 and cfg["max_steps"] == 3
    assert main(["embed", "--model", str(tmp_path / "m"), "--corpus", str(corpus), "--out", str(tmp_path / "e"),
                 "--quiet"]) == 0
    emb = NoteEmbeddings.load(tmp_path / "e")
    assert emb.dim == 32 and len(emb) == 24 and np.isfinite(emb.note).all()
    assert "wrote" in capsys.readouterr().out


def test_bad_flag_values_are_one_line_errors(tmp_path, capsys):
    corpus = make_synthetic_corpus(tmp_path / "c", n_notes=12)
    code = main(["train-sft", "--corpus", str(corpus), "--out", str(tmp_path / "m"), *TINY, "--temperature", "0"])
    assert code == 2 and "temperature > 0" in capsys.readouterr().err
    code = main(["embed", "--model", "baseline:nope", "--corpus", str(corpus), "--out", str(tmp_path / "e")])
    assert code == 2 and "unknown baseline" in capsys.readouterr().err


def test_runtime_switch_reaches_feature_extraction(tmp_path, monkeypatch):
    """--runtime onnx exports the tiny towers for train-sft and embed; torch exports nothing; same vectors."""
    corpus = make_synthetic_corpus(tmp_path / "c", n_notes=12)
    assert main(["train-sft", "--corpus", str(corpus), "--out", str(tmp_path / "m"), "--quiet", *TINY,
                 "--runtime", "onnx"]) == 0
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 2  # text and image tower
    vectors = {}
    for runtime in ("onnx", "torch"):
        cache = tmp_path / f"cache-{runtime}"
        monkeypatch.setenv("UNINOTE_CACHE", str(cache))  # no features shared between the two runs
        assert main(["embed", "--model", str(tmp_path / "m"), "--corpus", str(corpus), "--quiet",
                     "--out", str(tmp_path / runtime), "--runtime", runtime, "--dtype", "float32"]) == 0
        assert len(list(cache.glob("onnx/*.onnx"))) == (2 if runtime == "onnx" else 0)
        vectors[runtime] = NoteEmbeddings.load(tmp_path / runtime)
    for g in ("note", "image", "region"):
        a, b = getattr(vectors["onnx"], g), getattr(vectors["torch"], g)
        assert a.shape == b.shape and (a * b).sum(1).min() > 0.9999
    with pytest.raises(SystemExit):
        main(["embed", "--model", str(tmp_path / "m"), "--corpus", str(corpus), "--out", str(tmp_path / "x"),
              "--runtime", "tensorrt"])
