"""ONNX Runtime twins of the frozen towers: same outputs as torch, a cache that notices bad files."""

import json

import pytest
import torch

from uninote.errors import ConfigError
from uninote.model import UniNoteModel
from uninote.model import onnx_runtime as ox
from uninote.model.onnx_runtime import OnnxImageTower, OnnxTextTower
from uninote.model.testing import tiny_config

TEXTS = ["red shirt", "", "a blue shoe with a long title that runs on", "watch"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNINOTE_RUNTIME", raising=False)


def tiny_model(runtime, **overrides):
    model = UniNoteModel(tiny_config(**overrides))
    model.runtime = runtime
    return model


def test_tiny_towers_through_onnx_match_torch(tmp_path):
    from uninote.data.native import load_native
    from uninote.data.images import load_image
    from uninote.model.testing import make_synthetic_corpus

    corpus = load_native(make_synthetic_corpus(tmp_path / "corpus", n_notes=8))
    notes = [n for n in corpus.notes if n.images]
    photos = [load_image(corpus.image_path(n)) for n in notes]
    onnx, torch_model = tiny_model("onnx"), tiny_model("torch")
    assert isinstance(onnx.backbone("text"), OnnxTextTower) and isinstance(onnx.backbone("image"), OnnxImageTower)
    assert not isinstance(torch_model.backbone("text"), OnnxTextTower)
    with torch.inference_mode():
        for a, b in zip(onnx.image_features(photos), torch_model.image_features(photos)):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
        states, mask = onnx.text_tokens(TEXTS)
        ref_states, ref_mask = torch_model.text_tokens(TEXTS)
        assert torch.equal(mask, ref_mask) and torch.allclose(states[mask], ref_states[mask], atol=1e-5)
        assert torch.allclose(onnx.text_features(TEXTS), torch_model.text_features(TEXTS), atol=1e-5)
        q, ref = onnx.encode_query(notes[0], corpus.root), torch_model.encode_query(notes[0], corpus.root)
    assert float(q.note @ ref.note) > 0.9999 and float((q.images * ref.images).sum(-1).min()) > 0.9999


def test_auto_keeps_tiny_towers_on_torch_and_trainable_backbones_on_torch():
    auto = tiny_model(None)
    assert not isinstance(auto.backbone("text"), OnnxTextTower)
    full = tiny_model("onnx", freeze_backbones=False)
    with torch.no_grad():  # even at inference: training changes these weights, an export would go stale
        assert full.backbone("image") is full.image_tower and full.backbone("text") is full.text_tower


def test_unknown_runtime_fails_loudly(monkeypatch):
    monkeypatch.setenv("UNINOTE_RUNTIME", "tensorrt")
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'.*auto, onnx, torch"):
        tiny_model(None).text_features(["x"])


def test_export_is_cached_and_keyed_by_weights(tmp_path):
    model = tiny_model("onnx")
    first = model.backbone("image")
    assert first.path.exists() and first.path.parent == tmp_path / "cache" / "onnx"
    assert tiny_model("onnx").backbone("image").path == first.path  # same weights: same file
    other = tiny_model("onnx", seed=1).backbone("image")
    assert other.path != first.path
    assert sorted(p.name for p in first.path.parent.glob("*.onnx")) == sorted([first.path.name, other.path.name])


@pytest.mark.parametrize("damage", ["truncate", "flip", "no-sidecar"])
def test_a_corrupt_cached_export_is_exported_again(damage, caplog):
    path = tiny_model("onnx").backbone("image").path
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    else:
        path.with_suffix(".json").unlink()
    assert ox.read_export(path) is None
    twin = tiny_model("onnx").backbone("image")
    assert twin.path == path and path.read_bytes() == ox.read_export(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["bytes"] == path.stat().st_size and meta["opset"] == ox.OPSET


def test_an_export_that_differs_from_torch_is_refused_and_torch_is_used():
    model = tiny_model("onnx")
    path = model.backbone("image").path
    other = tiny_model("torch", seed=7).image_tower  # other weights written under this key
    example = {"pixels": torch.zeros(1, 3, 32, 32)}
    ox.write_export(other, example, {"pixels": {0: "batch"}, "output": {0: "batch"}}, path, {})
    fresh = tiny_model("onnx")
    with pytest.warns(RuntimeWarning, match=r"differs from torch by [0-9.e-]+ on the check batch, "
                      r"above the tolerance 0.001; using the torch tower"):
        tower = fresh.backbone("image")
    assert tower is fresh.image_tower
    pixels = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        a, b = fresh.pixel_features(pixels)[0], tiny_model("torch").pixel_features(pixels)[0]
    assert torch.equal(a, b)


def test_onnx_threads_follow_torch_threads():
    model = tiny_model("onnx")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.backbone("image")
        torch.set_num_threads(2)
        two = model.backbone("image")
    finally:
        torch.set_num_threads(before)
    assert one is not two
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert two.session.get_session_options().intra_op_num_threads == 2
