"""The image tower's last blocks trained on cached feature maps (``image_trained_blocks``)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from uninote.data.images import load_image
from uninote.errors import ConfigError
from uninote.model import UniNoteModel
from uninote.model.features import cache_root, corpus_features, embed_from_features, fingerprint, subset_features
from uninote.model.onnx_runtime import OnnxImageTower, export_path, inference_tower, weights_hash
from uninote.model.testing import tiny_config
from uninote.model.towers import TowerPrefix, build_image_tower, run_blocks


@pytest.fixture
def corpus(synthetic_corpus):
    return synthetic_corpus(16)


def blocks_model(blocks=1, **overrides):
    model = UniNoteModel(tiny_config(image_trained_blocks=blocks, **overrides))
    with torch.no_grad():  # trained-looking blocks: not the tower's random init
        for p in model.trained_image_blocks().parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_the_blocks_compose_to_the_tower():
    tower = build_image_tower(tiny_config())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        full = tower(x)
        for cut in range(len(tower.blocks()) + 1):
            assert torch.equal(run_blocks(tower, run_blocks(tower, x, 0, cut), cut), full)
            assert torch.equal(TowerPrefix(tower, cut)(x), run_blocks(tower, x, 0, cut))


@pytest.mark.integration
def test_efficientnet_blocks_compose_to_its_feature_map():
    from uninote.model.config import IMAGE_TOWER_BLOCKS, UniNoteConfig

    tower = build_image_tower(UniNoteConfig()).eval()
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 4 - 2
    with torch.no_grad():
        full = tower(x)
        assert len(tower.blocks()) == IMAGE_TOWER_BLOCKS["efficientnet-lite0"]
        for cut in (16, 17):
            assert torch.allclose(run_blocks(tower, run_blocks(tower, x, 0, cut), cut), full, atol=1e-5)


def test_only_the_trained_blocks_are_trainable_and_stored():
    model = blocks_model(1)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    tower_trainable = {n for n in trainable if n.startswith("image_tower.")}
    assert tower_trainable == {"image_tower.net.2.weight", "image_tower.net.2.bias"}  # the second conv
    stored = set(model.trainable_state_dict())
    assert {k for k in stored if k.startswith("image_tower.")} == tower_trainable
    assert not any(k.startswith("text_tower.") for k in stored)
    frozen = UniNoteModel(tiny_config())
    assert not any(k.startswith("image_tower.") for k in frozen.trainable_state_dict())


@pytest.mark.parametrize("bins", [0, 4])  # 4: colour histograms kept beside the maps, appended after the blocks
def test_cached_maps_give_the_full_towers_outputs(corpus, bins):
    model = blocks_model(1, image_colour_bins=bins)
    maps = corpus_features(corpus, model, progress=False, maps=True)
    assert maps.image is None and maps.image_map.dtype == torch.float16
    assert (maps.colour is None) == (bins == 0)
    if bins:
        assert maps.colour.shape == (len(maps.image_map), 1 + model.config.n_region_cells, bins ** 3)
    assert maps.image_map.shape[0] == maps.info["n_images"] - maps.info["skipped_images"] > 0
    emb = embed_from_features(model, corpus_features(corpus, model, progress=False), progress=False)
    batch = model.note_batch(corpus.notes[1:], corpus.root)  # raw photos through the whole tower (note 0's is broken)
    with torch.inference_mode():
        live = model.forward_features(batch)
    cached = {"note": emb.note[1:], "image": emb.image[emb.image_owner >= 1],
              "region": emb.region[emb.region_owner >= 1]}
    for key, got in cached.items():
        assert got.shape == tuple(live[key].shape)
        assert np.abs(got - live[key].numpy()).max() < 2e-3, key  # float16 maps
    # the maps in a training batch give the same embeddings as the pooled features
    rows = np.arange(len(maps))
    with torch.inference_mode():
        from_maps = model.forward_features(maps.batch(rows))
    assert torch.allclose(from_maps["note"], torch.from_numpy(emb.note), atol=1e-3)
    assert torch.allclose(from_maps["region"], torch.from_numpy(emb.region), atol=1e-3)
    part = subset_features(maps, maps.note_ids[3:9])
    assert torch.equal(part.image_map, maps.batch(np.arange(3, 9))["image_map"])
    if bins:
        assert torch.equal(part.colour, maps.batch(np.arange(3, 9))["image_colour"])


def test_maps_cache_has_its_own_key_and_frozen_keys_stay(corpus):
    frozen, blocks = UniNoteModel(tiny_config()), blocks_model(1)
    assert fingerprint(corpus, frozen.config) != fingerprint(corpus, blocks.config)
    corpus_features(corpus, blocks, progress=False)
    entries = list((cache_root() / "features").iterdir())
    assert fingerprint(corpus, blocks.config) in {e.name for e in entries}
    # a second model with other trained weights and the same cut reuses the maps entry
    other = blocks_model(1)
    with torch.no_grad():
        other.image_tower.net[2].weight.mul_(2.0)
    a = corpus_features(corpus, blocks, progress=False)
    b = corpus_features(corpus, other, progress=False)
    assert len(list((cache_root() / "features").iterdir())) == len(entries)
    assert not torch.equal(a.image, b.image)  # pooled through each model's own blocks


def test_checkpoint_with_trained_blocks_round_trips_and_keeps_its_version(tmp_path, corpus):
    model = blocks_model(1)
    model.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert {"image_tower.net.2.weight", "image_tower.net.2.bias"} <= keys
    assert not any(k.startswith("image_tower.net.0") for k in keys)  # the frozen rest: by name only
    loaded = UniNoteModel.from_pretrained(tmp_path)
    assert loaded.version == model.version and loaded.config.image_trained_blocks == 1
    for name, value in model.trainable_state_dict().items():
        assert torch.equal(loaded.trainable_state_dict()[name], value), name
    assert torch.equal(loaded.image_tower.net[0].weight, model.image_tower.net[0].weight)  # rebuilt frozen part
    q = loaded.encode_query(corpus.notes[1], corpus.root)
    assert np.allclose(q.images, model.encode_query(corpus.notes[1], corpus.root).images, atol=1e-6)
    with torch.no_grad():
        loaded.image_tower.net[2].weight.add_(0.01)
    assert loaded.version != model.version  # other blocks, other embedding space


def test_an_old_checkpoint_without_blocks_loads_unchanged(tmp_path):
    model = UniNoteModel(tiny_config())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["image_trained_blocks"]  # written before the field existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = UniNoteModel.from_pretrained(tmp_path)
    assert loaded.config.image_trained_blocks == 0 and loaded.version == model.version
    assert set(loaded.trainable_state_dict()) == set(model.trainable_state_dict())


@pytest.mark.parametrize("bins", [0, 4])
def test_trained_blocks_under_onnx_run_the_frozen_part_there(corpus, bins):
    torch.manual_seed(0)
    model = blocks_model(1, image_colour_bins=bins)
    reference = UniNoteModel(model.config)
    reference.load_state_dict(model.state_dict())
    model.runtime, reference.runtime = "onnx", "torch"
    twin = inference_tower(model, "image")
    assert isinstance(twin, OnnxImageTower) and isinstance(reference.backbone("image"), TowerPrefix)
    assert not any(m.training for m in model.image_tower.modules())  # the export left the tower in eval mode
    images = [load_image(corpus.image_path(n, 0)) for n in corpus.notes[1:6]]
    with torch.inference_mode():
        for a, b in zip(model.image_features(images), reference.image_features(images)):
            assert torch.allclose(a, b, atol=1e-4)
    # the export holds the frozen blocks only: other trained weights, the same file
    other = blocks_model(1)
    with torch.no_grad():
        other.image_tower.net[2].weight.mul_(2.0)
    assert other.version != model.version
    prefix = TowerPrefix(other.image_tower, other.config.image_cut)
    assert weights_hash(prefix) == weights_hash(TowerPrefix(model.image_tower, model.config.image_cut))
    assert twin.path == export_path("tiny-blocks0-1", weights_hash(prefix), 32)


@pytest.mark.parametrize("overrides, message", [
    (dict(image_trained_blocks=-1), "must be >= 0"),
    (dict(image_trained_blocks=2), r"must be in \[0, 1\]"),
    (dict(image_trained_blocks=1, freeze_backbones=False), "full fine-tuning"),
    (dict(image_trained_blocks=1, image_tower="some/vit"), "needs an image tower made of blocks"),
])
def test_bad_trained_block_counts_fail_loudly(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides)
