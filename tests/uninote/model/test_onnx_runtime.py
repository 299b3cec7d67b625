"""ONNX Runtime twins of the frozen towers: same outputs as torch, a cache that notices bad files."""

import json

import numpy as np
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


# --- INT8 (--runtime onnx-int8) ----------------------------------------------------------------
IMAGE_INT8 = {"format": 1, "op_types": ["Conv"], "weight_type": "QUInt8", "per_channel": False}


def test_int8_twins_are_built_cached_apart_and_close_to_float(monkeypatch):
    monkeypatch.setitem(ox.QUANTIZE, "image", IMAGE_INT8)  # the conv path too (off for the real tower)
    float_model, int8_model = tiny_model("onnx"), tiny_model("onnx-int8")
    f_img, q_img = float_model.backbone("image"), int8_model.backbone("image")
    f_txt, q_txt = float_model.backbone("text"), int8_model.backbone("text")
    assert isinstance(q_img, OnnxImageTower) and isinstance(q_txt, OnnxTextTower) and q_img.int8 and q_txt.int8
    assert not f_img.int8 and "-int8-" not in f_img.path.name
    for f, q in ((f_img, q_img), (f_txt, q_txt)):
        assert q.path != f.path and "-int8-" in q.path.name and q.path.parent == f.path.parent
        assert q.path.read_bytes() != f.path.read_bytes() and ox.read_export(q.path) is not None
        meta = json.loads(q.path.with_suffix(".json").read_text())
        assert meta["quantize"]["op_types"] and meta["bytes"] == q.path.stat().st_size
        assert q.check_cosine >= ox.INT8_MIN_COSINE
    ops = lambda path: {n.op_type for n in __import__("onnx").load(str(path)).graph.node}  # noqa: E731
    assert "ConvInteger" in ops(q_img.path) and "ConvInteger" not in ops(f_img.path)
    assert "MatMulInteger" in ops(q_txt.path) and "MatMulInteger" not in ops(f_txt.path)
    # reused, not quantised again; other weights get another file
    assert tiny_model("onnx-int8").backbone("text").path == q_txt.path
    assert tiny_model("onnx-int8", seed=1).backbone("text").path != q_txt.path
    # outputs close to float (not equal: the weights are 8-bit), within the stated tolerance
    pixels = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        a, b = int8_model.pixel_features(pixels)[0], float_model.pixel_features(pixels)[0]
        sa, mask = int8_model.text_tokens(TEXTS)
        sb, _ = float_model.text_tokens(TEXTS)
    assert not torch.equal(a, b) and ox.smallest_cosine(a.numpy(), b.numpy()) >= ox.INT8_MIN_COSINE
    assert not torch.equal(sa, sb) and ox.smallest_cosine(sa[mask].numpy(), sb[mask].numpy()) >= ox.INT8_MIN_COSINE


def test_int8_quantises_the_text_tower_only_by_default():
    model = tiny_model("onnx-int8")
    assert model.backbone("text").int8 and not model.backbone("image").int8
    assert model.backbone("image").path == tiny_model("onnx").backbone("image").path


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupt_int8_file_is_quantised_again(damage):
    path = tiny_model("onnx-int8").backbone("text").path
    data = path.read_bytes()
    bad = data[: len(data) // 2] if damage == "truncate" else data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
    path.write_bytes(bad)
    assert ox.read_export(path) is None
    twin = tiny_model("onnx-int8").backbone("text")
    assert twin.int8 and twin.path == path and ox.read_export(path) == path.read_bytes() == data


def test_an_int8_file_below_the_cosine_tolerance_falls_back_to_the_float_twin(monkeypatch):
    monkeypatch.setattr(ox, "INT8_MIN_COSINE", 1.0 + 1e-9)  # nothing quantised reaches it
    model = tiny_model("onnx-int8")
    with pytest.warns(RuntimeWarning, match=r"INT8 ONNX export of tiny .* smallest cosine of [0-9.]+ against "
                      r"torch on the check batch, below the tolerance .*; using the float ONNX twin"):
        tower = model.backbone("text")
    assert isinstance(tower, OnnxTextTower) and not tower.int8
    assert tower.check_difference <= ox.TOLERANCE


def test_smallest_cosine():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert ox.smallest_cosine(a, a) == pytest.approx(1.0)
    assert ox.smallest_cosine(a, np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]])) == pytest.approx(0.0)
    assert ox.smallest_cosine(a, np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])) == 0.0  # one zero row


def test_int8_features_are_cached_apart(synthetic_corpus):
    from uninote.model import features as F

    corpus = synthetic_corpus(6)
    cfg = tiny_config()
    assert F.fingerprint(corpus, cfg, int8=True) != F.fingerprint(corpus, cfg)
    f, q = (F.corpus_features(corpus, tiny_model(r), progress=False) for r in ("onnx", "onnx-int8"))
    entries = list((ox.cache_root() / "features").iterdir())
    assert len(entries) == 2 and not torch.equal(f.text, q.text) and torch.equal(f.image, q.image)
