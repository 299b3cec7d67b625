"""Real bundled weights (MiniLM, EfficientNet-Lite0, USE-m3) on a handful of real catalogue photos."""

import io
import os
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

DATA = Path(os.environ.get("UNINOTE_SHARED_DATA", Path(__file__).resolve().parents[3] / ".." / "shared" / "data"))


@pytest.fixture(scope="module")
def photos():
    import pyarrow.parquet as pq
    from PIL import Image

    files = sorted((DATA / "fashion-product-images-small" / "data").glob("*.parquet"))
    if not files:
        pytest.skip("shared fashion data not available")
    table = pq.ParquetFile(files[0]).read_row_group(0).slice(0, 6).to_pylist()
    return [(r["productDisplayName"], Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB")) for r in table]


def test_bundled_backbones_give_the_documented_feature_shapes(photos):
    from uninote.model import UniNoteConfig, UniNoteModel

    model = UniNoteModel(UniNoteConfig())
    feats = model.text_features([t for t, _ in photos])
    assert feats.shape == (6, 384)
    pooled, regions = model.image_features([im for _, im in photos])
    assert pooled.shape == (6, 1280) and regions.shape == (6, 9, 1280)
    fmap = model.image_tower(torch.zeros(1, 3, 224, 224))
    assert fmap.shape == (1, 1280, 7, 7)
    # MiniLM is a real sentence model: a paraphrase is closer than an unrelated title
    t = torch.nn.functional.normalize(model.text_features(["navy blue shirt for men", "men's navy shirt",
                                                           "gold wrist watch"]), dim=-1)
    assert t[0] @ t[1] > t[0] @ t[2]


def test_use_m3_tower_handles_chinese():
    from uninote.model import UniNoteModel
    from uninote.model.testing import tiny_config

    model = UniNoteModel(tiny_config(text_tower="use-m3"))
    out = model.encode_text(["红色连衣裙", "red dress", ""])
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in model.text_tower.parameters())


def test_frozen_model_serves_cached_features_without_loading_backbones(tmp_path, monkeypatch):
    from uninote.data.native import load_native
    from uninote.model import UniNoteConfig, UniNoteModel
    from uninote.model.testing import make_synthetic_corpus
    from uninote.model.features import corpus_features

    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    corpus = load_native(make_synthetic_corpus(tmp_path / "c", n_notes=6, text_only=1, multi_image=1))
    cfg = UniNoteConfig(embed_dim=64, matryoshka_dims=[32, 64], hidden_dim=32)
    corpus_features(corpus, UniNoteModel(cfg), progress=False)  # fills the cache
    fresh = UniNoteModel(cfg)
    emb = fresh.embed_corpus(corpus, progress=False)
    assert not fresh.text_tower.loaded and not fresh.image_tower.loaded
    q = fresh.encode_query(corpus.notes[0], corpus.root)
    assert fresh.image_tower.loaded and abs(float(q.note @ emb.note[0]) - 1) < 1e-2


def test_bundled_backbones_through_onnx_runtime_match_torch(photos, runtimes_agree):
    """EfficientNet-Lite0 and MiniLM (token states included) exported to ONNX give torch's features."""
    from uninote.model import UniNoteConfig

    runtimes_agree(UniNoteConfig(), [t for t, _ in photos] + [""], [im for _, im in photos[:4]], atol=1e-3)


def test_trained_last_blocks_serve_real_photos_alike_under_onnx_and_torch(photos):
    from uninote.model import UniNoteConfig, UniNoteModel
    from uninote.model.onnx_runtime import OnnxImageTower

    images = [im for _, im in photos]
    onnx, reference = (UniNoteModel(UniNoteConfig(text_tower="tiny", image_trained_blocks=2)) for _ in range(2))
    onnx.runtime, reference.runtime = "onnx", "torch"
    with torch.inference_mode():
        assert isinstance(onnx.backbone("image"), OnnxImageTower)  # the frozen 16 blocks
        for a, b in zip(onnx.image_features(images), reference.image_features(images)):
            assert torch.allclose(a, b, atol=1e-3)
        frozen = UniNoteModel(UniNoteConfig(text_tower="tiny"))
        frozen.runtime = "torch"
        # ImageNet weights in the trained blocks (untrained yet): the frozen tower's features
        assert torch.allclose(reference.image_features(images)[0], frozen.image_features(images)[0], atol=1e-4)
