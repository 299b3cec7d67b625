import numpy as np
import pytest
import torch

from uninote.data.note import Note
from uninote.errors import ConfigError
from uninote.model import UniNoteConfig, UniNoteModel
from uninote.model.testing import tiny_config


@pytest.fixture
def model():
    return UniNoteModel(tiny_config())


def test_every_granularity_lives_in_one_normalised_space(model, corpus):
    notes = corpus.notes[1:5]
    texts = [n.text() for n in notes]
    from uninote.data.images import load_image
    images = [load_image(corpus.image_path(n, 0)) for n in notes]
    t, i, r = model.encode_text(texts), model.encode_image(images), model.encode_regions(images)
    n = model.encode_note(notes, corpus.root)
    assert t.shape == (4, 32) and i.shape == (4, 32) and n.shape == (4, 32)
    assert r.shape == (4, 4, 32)  # 2x2 grid
    for x in (t, i, r.reshape(-1, 32), n):
        assert torch.allclose(x.norm(dim=-1), torch.ones(len(x)), atol=1e-5)
    assert model.encode_text(texts, normalize=False).norm(dim=-1).std() > 0


def test_text_only_image_only_and_multi_image_notes(model, corpus):
    text_only = Note("t", title="red shirt")
    multi = corpus.notes[1]  # two photos
    assert len(multi.images) == 2
    image_only = Note("i", images=[str(corpus.image_path(multi, 0))])
    out = model.encode_note([text_only, multi, image_only], corpus.root)
    assert torch.isfinite(out).all() and torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    q = model.encode_query(multi, corpus.root)
    assert q.images.shape == (2, 32) and q.regions.shape == (8, 32)
    assert list(q.region_image) == [0] * 4 + [1] * 4
    assert model.encode_query(text_only).images is None
    # the multi-photo note fuses the mean of its photos: changing photo 2 changes the note vector
    swapped = Note("m", title=multi.title, tags=multi.tags, images=[multi.images[0], corpus.notes[5].images[0]])
    assert not torch.allclose(model.encode_note([multi], corpus.root), model.encode_note([swapped], corpus.root))


def test_embed_corpus_matches_encode_query_and_skips_broken_photos(model, corpus, caplog):
    emb = model.embed_corpus(corpus, batch_size=7, progress=False)
    assert "skipped 1 unreadable photo" in caplog.text
    assert emb.note.shape == (len(corpus), 32)
    assert len(emb.image) == sum(len(n.images) for n in corpus.notes) - 1
    assert emb.model_version == model.version
    for row in (1, 7, len(corpus) - 1):  # multi-photo, single, text-only
        q = model.encode_query(corpus.notes[row], corpus.root)
        assert np.allclose(q.note, emb.note[row], atol=2e-3)  # cache is float16
        got = emb.query(row)
        assert (got.images is None) == (q.images is None)
        if q.images is not None:
            assert np.allclose(got.images, q.images, atol=2e-3)
            assert np.array_equal(got.region_image, q.region_image)


def test_forward_features_region_subset_matches_full(model, corpus):
    batch = model.note_batch(corpus.notes[1:4], corpus.root)
    full = model.forward_features(batch)
    sub = dict(batch, region=batch["region"][[2]], region_image=torch.tensor([2]))
    part = model.forward_features(sub)
    assert torch.allclose(part["region"], full["region"][full["region_image"] == 2], atol=1e-6)
    assert torch.equal(part["region_owner"], torch.full((4,), int(batch["image_owner"][2])))


def test_matryoshka_truncation_properties(model, corpus):
    emb = model.embed_corpus(corpus, progress=False)
    for dim in (8, 16):
        cut = emb.truncate(dim)
        assert cut.note.shape[1] == dim
        assert np.allclose(np.linalg.norm(cut.note, axis=1), 1, atol=1e-5)
        manual = emb.note[:, :dim] / np.linalg.norm(emb.note[:, :dim], axis=1, keepdims=True)
        assert np.allclose(cut.note, manual, atol=1e-6)


def test_save_load_round_trip_gives_identical_embeddings(model, corpus, tmp_path):
    with torch.no_grad():
        for p in model.fusion.parameters():
            p.add_(0.01)
    path = model.save_pretrained(tmp_path / "ckpt")
    assert {f.name for f in path.iterdir()} == {"config.json", "model.safetensors"}
    loaded = UniNoteModel.from_pretrained(path)
    assert loaded.version == model.version
    a = model.encode_note(corpus.notes[1:6], corpus.root)
    b = loaded.encode_note(corpus.notes[1:6], corpus.root)
    assert torch.equal(a, b)


def test_frozen_checkpoint_stores_trainable_weights_only(tmp_path):
    m = UniNoteModel(tiny_config())
    keys = m.trainable_state_dict().keys()
    assert keys and not any(k.startswith(("text_tower", "image_tower")) for k in keys)
    full = UniNoteModel(tiny_config(freeze_backbones=False))
    assert any(k.startswith("image_tower") for k in full.trainable_state_dict())


def test_version_changes_with_weights_and_config():
    a, b = UniNoteModel(tiny_config()), UniNoteModel(tiny_config())
    assert a.version == b.version
    with torch.no_grad():
        b.text_head.skip.weight[0, 0] += 1
    assert a.version != b.version
    assert UniNoteModel(tiny_config(embed_dim=16, matryoshka_dims=[8, 16])).version != a.version


def test_segment_gains_scale_each_matryoshka_segment_of_every_output(model, corpus):
    from uninote.model.uninote import matryoshka_segments

    assert matryoshka_segments([8, 16, 32], 32).bincount().tolist() == [8, 8, 16]
    assert matryoshka_segments([8, 16], 32).bincount().tolist() == [8, 8, 16]  # the rest is a segment too
    notes = corpus.notes[1:5]
    texts = [n.text() for n in notes]
    before = model.encode_note(notes, corpus.root, normalize=False)
    text_before = model.encode_text(texts, normalize=False)
    with torch.no_grad():
        model.segment_log_gain.copy_(torch.tensor([0.0, np.log(2.0), np.log(0.5)]))
    after = model.encode_note(notes, corpus.root, normalize=False)
    assert torch.allclose(after[:, :8], before[:, :8])
    assert torch.allclose(after[:, 8:16], 2 * before[:, 8:16])
    assert torch.allclose(after[:, 16:], 0.5 * before[:, 16:])
    assert torch.allclose(model.encode_text(texts, normalize=False)[:, 16:], 0.5 * text_before[:, 16:])
    # the first prefix does not see the gains; what the full vector weighs does
    first = torch.nn.functional.normalize
    assert torch.allclose(first(after[:, :8], dim=-1), first(before[:, :8], dim=-1), atol=1e-6)


def test_identity_segment_gains_keep_old_checkpoints_loading_with_their_version(model, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    d = model.save_pretrained(tmp_path / "m")
    old = {k: v for k, v in load_file(str(d / "model.safetensors")).items()
           if k not in ("segment_log_gain", "text_pool.query")}
    save_file(old, str(d / "model.safetensors"))  # as written before the gains and the pooling query existed
    config = json.loads((d / "config.json").read_text())
    del config["text_pooling"]
    (d / "config.json").write_text(json.dumps(config))
    loaded = UniNoteModel.from_pretrained(d)
    assert loaded.version == model.version and not loaded.segment_log_gain.any()
    assert loaded.config.text_pooling == "mean" and not loaded.text_pool.query.any()
    with torch.no_grad():
        loaded.segment_log_gain[-1] = 0.3
    assert loaded.version != model.version
    loaded.save_pretrained(tmp_path / "g")
    assert UniNoteModel.from_pretrained(tmp_path / "g").segment_log_gain[-1].item() == pytest.approx(0.3)


def test_from_pretrained_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        UniNoteModel.from_pretrained(tmp_path / "nope" / "deeper")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="needs config.json"):
        UniNoteModel.from_pretrained(tmp_path / "empty")


@pytest.mark.parametrize("kwargs,match", [
    (dict(matryoshka_dims=[64, 32]), "strictly increasing"),
    (dict(matryoshka_dims=[64, 1024]), "strictly increasing"),
    (dict(n_regions=0), "region grid"),
    (dict(text_tower="use-m3", freeze_backbones=False), "cannot be fine-tuned"),
])
def test_config_validation_fails_loudly(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        UniNoteConfig(**kwargs).validate()


def test_unknown_config_key_is_named():
    with pytest.raises(ConfigError, match="unknown UniNoteConfig keys \\['embed_size'\\]"):
        UniNoteConfig.from_dict({"embed_size": 3})


def test_lazy_tower_builds_on_first_use_and_forwards_attributes():
    from torch import nn

    from uninote.model.towers import LazyTower

    built = []

    def build():
        built.append(1)
        lin = nn.Linear(3, 4)
        lin.mean = (0.5, 0.5, 0.5)
        return lin

    lazy = LazyTower(build, 4, lambda: torch.device("cpu"))
    assert not lazy.loaded and list(lazy.parameters()) == [] and lazy.feature_dim == 4
    assert lazy.mean == (0.5, 0.5, 0.5) and lazy.loaded and len(built) == 1
    assert lazy(torch.zeros(2, 3)).shape == (2, 4)
    assert all(not p.requires_grad for p in lazy.tower.parameters()) and len(built) == 1


def test_photos_travel_as_uint8_and_are_normalised_on_the_model_side():
    from PIL import Image

    from uninote.model.towers import load_pixels, normalize_pixels

    white, black = Image.new("RGB", (10, 6), (255, 255, 255)), Image.new("L", (3, 3), 0)
    pixels = load_pixels([white, black], 8)
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, 3, 8, 8)
    x = normalize_pixels(pixels, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    assert x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, 3.0, 1.0]))  # (1 - mean) / std
    assert torch.allclose(x[1, :, 0, 0], torch.tensor([-1.0, -1.0, 0.0]))  # (0 - mean) / std


def test_raw_batch_forward_equals_features_of_the_same_photos(corpus):
    """The full fine-tuning input (texts + uint8 pixels) gives what the inference path gives."""
    from uninote.data.images import load_image
    from uninote.model.towers import load_pixels

    model = UniNoteModel(tiny_config())
    notes = [n for n in corpus.notes if len(n.images) == 1][:3]
    photos = [load_image(corpus.image_path(n, 0)) for n in notes]
    raw = {"texts": [n.text() for n in notes], "pixels": load_pixels(photos, model.config.image_size),
           "image_owner": torch.arange(3)}
    with torch.no_grad():
        out = model(raw)
    assert torch.allclose(out["note"], model.encode_note(notes, root=corpus.root), atol=1e-6)
    assert torch.allclose(out["image"], model.encode_image(photos), atol=1e-6)


def test_token_attention_pool_matches_a_hand_computed_case():
    from uninote.model.fusion import TokenAttentionPool

    pool = TokenAttentionPool(2)
    states = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [[2.0, 2.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    with torch.no_grad():
        assert torch.allclose(pool(states, mask)[0], torch.tensor([0.5, 0.5]))  # zero query: the masked mean
        pool.query.copy_(torch.tensor([np.log(3.0), 0.0]))
        out = pool(states, mask)
    # scores log 3 and 0 -> weights 3/4 and 1/4; the padded third token and the empty text weigh nothing
    assert torch.allclose(out[0], torch.tensor([0.75, 0.25])) and torch.equal(out[1], torch.zeros(2))


def test_attention_pooling_starts_as_mean_pooling_and_round_trips(model, corpus, tmp_path):
    notes, texts = corpus.notes[1:6], [n.text() for n in corpus.notes[1:6]]
    mean_note, mean_text = model.encode_note(notes, corpus.root), model.encode_text(texts)
    assert not model.text_pool.query.requires_grad  # unused by mean pooling, so not trainable
    assert model.use_token_pooling() and model.config.text_pooling == "attention"
    assert model.text_pool.query.requires_grad
    assert torch.allclose(model.encode_note(notes, corpus.root), mean_note, atol=1e-5)
    assert torch.allclose(model.encode_text(texts), mean_text, atol=1e-5)
    with torch.no_grad():
        model.text_pool.query.normal_(std=2.0)
    moved = model.encode_text(texts)
    assert (moved - mean_text).abs().max() > 1e-3
    model.save_pretrained(tmp_path / "m")
    loaded = UniNoteModel.from_pretrained(tmp_path / "m")
    assert loaded.config.text_pooling == "attention" and loaded.version == model.version
    assert torch.allclose(loaded.encode_text(texts), moved, atol=1e-6)
    with pytest.raises(ConfigError, match="text_tokens"):  # an attention model cannot use pooled features
        model.forward_features({"text": torch.zeros(2, model.text_tower.feature_dim)})


def test_text_pooling_needs_token_states():
    with pytest.raises(ConfigError, match="text_pooling='attention' needs token states"):
        UniNoteConfig(text_tower="use-m3", text_pooling="attention").validate()
    with pytest.raises(ConfigError, match="text_pooling"):
        UniNoteConfig(text_pooling="max").validate()
    use = UniNoteModel(UniNoteConfig(text_tower="use-m3", image_tower="tiny", tiny_width=8, embed_dim=16,
                                     matryoshka_dims=[8, 16], hidden_dim=8))
    assert not use.use_token_pooling() and use.config.text_pooling == "mean"
