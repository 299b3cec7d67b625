import numpy as np
import pytest

from uninote.errors import ConfigError
from uninote.model import UniNoteModel, load_model
from uninote.model.baselines import BaselineModel
from uninote.model.testing import tiny_config


def _baseline(kind):
    return BaselineModel(kind, tiny_config())


def test_baselines_share_the_feature_cache_and_have_the_expected_shapes(corpus):
    feats_model = UniNoteModel(tiny_config())
    from uninote.model.features import corpus_features

    feats = corpus_features(corpus, feats_model, progress=False)
    text, image, concat = (_baseline(k).embed_corpus(corpus, progress=False) for k in ("text", "image", "concat"))
    w = 16  # tiny feature width
    assert text.note.shape == (len(corpus), w) and text.image.shape == (0, w) and text.region.shape == (0, w)
    assert image.image.shape == (len(feats.image), w) and image.region.shape == (len(feats.image) * 4, w)
    assert concat.note.shape == (len(corpus), 2 * w)
    # text baseline = normalised cached text features
    ref = feats.text.float().numpy()
    assert np.allclose(text.note, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    # concat = [t ; mean image] re-normalised; text-only notes have a zero image half
    last = len(corpus) - 1
    assert np.allclose(concat.note[last, w:], 0)
    assert np.allclose(np.linalg.norm(concat.note, axis=1), 1, atol=1e-5)
    # image baseline note vector = normalised mean of the note's normalised photos
    row = 1
    imgs = image.image[image.image_owner == row]
    mean = imgs.mean(0)
    assert np.allclose(image.note[row], mean / np.linalg.norm(mean), atol=1e-5)


def test_baseline_query_matches_corpus_embedding(corpus):
    b = _baseline("concat")
    emb = b.embed_corpus(corpus, progress=False)
    q = b.encode_query(corpus.notes[2], corpus.root)
    assert np.allclose(q.note, emb.note[2], atol=2e-3)


def test_load_model_specs(tmp_path):
    assert load_model("baseline:text").kind == "text"
    with pytest.raises(ConfigError, match="unknown baseline"):
        load_model("baseline:audio")
    m = UniNoteModel(tiny_config())
    m.save_pretrained(tmp_path / "ck")
    assert load_model(str(tmp_path / "ck")).version == m.version
