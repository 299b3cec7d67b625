"""The colour histogram appended to photo and region features (``image_colour_bins``)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from uninote.errors import ConfigError
from uninote.model import UniNoteModel
from uninote.model.features import corpus_features, embed_from_features, fingerprint
from uninote.model.testing import tiny_config
from uninote.model.towers import colour_histograms

RED, BLUE = (200, 20, 20), (20, 20, 200)


def photo(top, bottom=(255, 255, 255), size=224):
    """A photo whose upper and lower halves are one colour each."""
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:size // 2], pixels[size // 2:] = top, bottom
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def bin_of(rgb, bins=8):
    r, g, b = (c * bins // 256 for c in rgb)
    return (r * bins + g) * bins + b


def test_a_photo_on_white_is_its_colour_and_each_cell_its_own():
    pooled, cells = colour_histograms(photo(RED), bins=8, n_regions=2)
    assert pooled.shape == (1, 512) and cells.shape == (1, 4, 512)
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(1)) and torch.allclose(cells.norm(dim=-1), torch.ones(1, 4))
    assert pooled[0, bin_of(RED)] == pytest.approx(1.0)  # the white background is left out
    assert cells[0, :2, bin_of(RED)].tolist() == [1.0, 1.0]  # upper cells, row-major
    assert cells[0, 2:, bin_of((255, 255, 255))].tolist() == [1.0, 1.0]  # all white: white it is


def test_two_colours_share_the_photo_by_area():
    pooled, cells = colour_histograms(photo(RED, BLUE), bins=4, n_regions=2)
    assert pooled[0, bin_of(RED, 4)] == pytest.approx(0.5 ** 0.5)
    assert pooled[0, bin_of(BLUE, 4)] == pytest.approx(0.5 ** 0.5)
    assert cells[0, 3, bin_of(BLUE, 4)] == pytest.approx(1.0) and cells[0, 3, bin_of(RED, 4)] == 0


def test_small_photos_are_not_averaged_first():
    pooled, _ = colour_histograms(photo(RED, BLUE, size=32), bins=4, n_regions=3)
    assert pooled[0, bin_of(RED, 4)] == pytest.approx(0.5 ** 0.5)


def test_float_pixels_give_the_histograms_of_their_uint8_twins():
    pixels = photo(RED, BLUE)
    for got, want in zip(colour_histograms(pixels.float() / 255, 4, 2), colour_histograms(pixels, 4, 2)):
        assert torch.allclose(got, want)


@pytest.fixture
def corpus(synthetic_corpus):
    return synthetic_corpus(12)


def test_the_model_feeds_the_histograms_to_its_image_head(corpus):
    plain, colour = UniNoteModel(tiny_config()), UniNoteModel(tiny_config(image_colour_bins=4))
    assert colour.image_feature_dim == plain.image_feature_dim + 64
    assert colour.image_head.norm.normalized_shape == (plain.image_feature_dim + 64,)
    feats = corpus_features(corpus, colour, progress=False)
    assert feats.image.shape[1] == feats.region.shape[2] == colour.image_feature_dim
    assert fingerprint(corpus, plain.config) != fingerprint(corpus, colour.config)
    # cached features embed like raw photos through the whole path (note 0's photo is broken)
    emb = embed_from_features(colour, feats, progress=False)
    with torch.inference_mode():
        live = colour.forward_features(colour.note_batch(corpus.notes[1:], corpus.root))
    assert np.abs(emb.image[emb.image_owner >= 1] - live["image"].numpy()).max() < 2e-3
    assert np.abs(emb.region[emb.region_owner >= 1] - live["region"].numpy()).max() < 2e-3
    # an upload: only its colour differs, and so does its vector
    red, blue = (Image.fromarray(photo(c)[0].permute(1, 2, 0).numpy()) for c in (RED, BLUE))
    with torch.inference_mode():
        a, b = (colour.image_head(colour.image_features([im])[0]) for im in (red, blue))
        pa, pb = (plain.image_head(plain.image_features([im])[0]) for im in (red, blue))
    assert (a - b).abs().max() > (pa - pb).abs().max()


def test_checkpoint_keeps_the_bins_and_old_ones_their_version(tmp_path):
    model = UniNoteModel(tiny_config(image_colour_bins=4))
    model.save_pretrained(tmp_path / "colour")
    loaded = UniNoteModel.from_pretrained(tmp_path / "colour")
    assert loaded.config.image_colour_bins == 4 and loaded.version == model.version
    plain = UniNoteModel(tiny_config())
    plain.save_pretrained(tmp_path / "plain")
    config = json.loads((tmp_path / "plain/config.json").read_text())
    del config["image_colour_bins"]  # written before the field existed
    (tmp_path / "plain/config.json").write_text(json.dumps(config))
    assert UniNoteModel.from_pretrained(tmp_path / "plain").version == plain.version


@pytest.mark.parametrize("overrides, message", [
    ({"image_colour_bins": 1}, "in \\[2, 16\\]"),
    ({"image_colour_bins": 17}, "in \\[2, 16\\]"),
    ({"image_colour_bins": 4, "image_colour_scale": 0}, "must be > 0"),
])
def test_bad_colour_settings_fail_loudly(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**overrides).validate()


def test_the_colour_scale_weights_the_histogram_where_it_enters_the_head(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = UniNoteModel(tiny_config(image_colour_bins=4, image_colour_scale=3.0)).eval()
    feats = corpus_features(corpus, model, progress=False)
    width = model.config.colour_dim
    scaled = torch.cat([feats.image[:, :-width], feats.image[:, -width:] * 3.0], -1)
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.image_head(scaled), dim=-1)
        assert torch.allclose(model.photo_head(feats.image), model.image_head(scaled))
    emb = embed_from_features(model, feats, progress=False)  # the feature path: forward_features
    assert np.allclose(emb.image, want.numpy(), atol=1e-3)  # stored as float16
    photo = Image.open(corpus.image_path(corpus.notes[0], 0))
    assert np.allclose(model.encode_image([photo]).numpy(), want[:1].numpy(), atol=1e-4)  # uploads


def test_checkpoint_keeps_the_colour_scale_and_unscaled_ones_their_version(tmp_path):
    torch.manual_seed(0)
    scaled = UniNoteModel(tiny_config(image_colour_bins=4, image_colour_scale=4.0))
    scaled.save_pretrained(tmp_path / "scaled")
    loaded = UniNoteModel.from_pretrained(tmp_path / "scaled")
    assert loaded.config.image_colour_scale == 4.0 and loaded.version == scaled.version
    plain = UniNoteModel(tiny_config(image_colour_bins=4))
    plain.load_state_dict(scaled.state_dict())
    assert plain.version != scaled.version  # the same weights read the histogram otherwise
    plain.save_pretrained(tmp_path / "plain")
    config = json.loads((tmp_path / "plain/config.json").read_text())
    del config["image_colour_scale"]  # written before the field existed
    (tmp_path / "plain/config.json").write_text(json.dumps(config))
    old = UniNoteModel.from_pretrained(tmp_path / "plain")
    assert old.config.image_colour_scale == 1.0 and old.version == plain.version


def test_note_colour_scale_weights_the_notes_photos_and_leaves_photo_vectors_alone(corpus, tmp_path, monkeypatch):
    """image_colour_scale 3 with note_colour_scale 1: photo and region vectors are those of scale 3
    everywhere, note vectors those of scale 1, on the feature path and for uploads alike."""
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    split = UniNoteModel(tiny_config(image_colour_bins=4, image_colour_scale=3.0, note_colour_scale=1.0)).eval()
    photos_like = UniNoteModel(tiny_config(image_colour_bins=4, image_colour_scale=3.0)).eval()
    notes_like = UniNoteModel(tiny_config(image_colour_bins=4)).eval()
    for twin in (photos_like, notes_like):
        twin.load_state_dict(split.state_dict())
    feats = corpus_features(corpus, split, progress=False)
    emb = {name: embed_from_features(m, feats, progress=False)
           for name, m in (("split", split), ("photos", photos_like), ("notes", notes_like))}
    assert np.array_equal(emb["split"].image, emb["photos"].image)
    assert np.array_equal(emb["split"].region, emb["photos"].region)
    assert np.array_equal(emb["split"].note, emb["notes"].note)
    assert not np.allclose(emb["split"].note, emb["photos"].note, atol=1e-3)  # the scale does reach notes
    notes = [n for n in corpus.notes if n.images and not any("broken" in p for p in n.images)][:3]
    rows = [list(emb["split"].note_ids).index(n.note_id) for n in notes]
    with torch.no_grad():
        note = split.encode_note(notes, corpus.root)
    assert np.allclose(note.numpy(), emb["split"].note[rows], atol=1e-3)  # uploads: stored as float16


def test_note_colour_scale_enters_the_version_only_when_it_differs(tmp_path):
    torch.manual_seed(0)
    follows = UniNoteModel(tiny_config(image_colour_bins=4, image_colour_scale=4.0))
    same = UniNoteModel(tiny_config(image_colour_bins=4, image_colour_scale=4.0, note_colour_scale=4.0))
    split = UniNoteModel(tiny_config(image_colour_bins=4, image_colour_scale=4.0, note_colour_scale=1.0))
    for m in (same, split):
        m.load_state_dict(follows.state_dict())
    assert same.version == follows.version != split.version
    split.save_pretrained(tmp_path / "split")
    loaded = UniNoteModel.from_pretrained(tmp_path / "split")
    assert loaded.config.note_colour_scale == 1.0 and loaded.version == split.version
    without = UniNoteModel(tiny_config(image_colour_scale=4.0, note_colour_scale=1.0))
    plain = UniNoteModel(tiny_config())
    plain.load_state_dict(without.state_dict())
    assert without.version == plain.version  # no histogram: the scales scale nothing
    with pytest.raises(ConfigError, match="note_colour_scale=0 must be > 0"):
        tiny_config(image_colour_bins=4, note_colour_scale=0).validate()
