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
