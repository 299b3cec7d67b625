import numpy as np
import pytest
import torch

from uninote.model import UniNoteModel
from uninote.model import features as F
from uninote.model.testing import tiny_config


@pytest.fixture
def corpus(synthetic_corpus):
    return synthetic_corpus(20)


def test_cache_is_written_once_and_reused(corpus, monkeypatch):
    model = UniNoteModel(tiny_config())
    first = F.corpus_features(corpus, model, progress=False)
    calls = {"n": 0}
    real = F.extract_features
    monkeypatch.setattr(F, "extract_features", lambda *a, **k: (calls.__setitem__("n", calls["n"] + 1), real(*a, **k))[1])
    again = F.corpus_features(corpus, model, progress=False)
    assert calls["n"] == 0 and torch.equal(first.region, again.region)
    assert first.info["skipped_images"] == 1
    # a different image size is a different fingerprint
    assert F.fingerprint(corpus, tiny_config(image_size=48)) != F.fingerprint(corpus, tiny_config())


def test_feature_batch_remaps_owners(corpus):
    feats = F.corpus_features(corpus, UniNoteModel(tiny_config()), progress=False)
    b = feats.batch([3, 1])
    owners = feats.image_owner.numpy()
    assert b["image"].shape[0] == (owners == 3).sum() + (owners == 1).sum()
    assert list(b["image_owner"]) == [0] * (owners == 3).sum() + [1] * (owners == 1).sum()


def test_token_states_are_cached_ragged_for_attention_pooling_models(corpus):
    mean_model, model = UniNoteModel(tiny_config()), UniNoteModel(tiny_config())
    model.use_token_pooling()
    assert F.fingerprint(corpus, model.config) != F.fingerprint(corpus, mean_model.config)
    assert F.corpus_features(corpus, mean_model, progress=False).tokens is None
    feats = F.corpus_features(corpus, model, progress=False)
    again = F.corpus_features(corpus, model, progress=False)  # from the cache: the same tensors
    assert torch.equal(again.tokens, feats.tokens) and torch.equal(again.token_offsets, feats.token_offsets)
    lengths = (feats.token_offsets[1:] - feats.token_offsets[:-1]).tolist()
    texts = [n.text() for n in corpus.notes]
    assert lengths == [min(len(t), model.config.max_text_tokens) for t in texts]  # tiny: one token a character
    b = feats.batch([4, 0, 2])
    assert b["text_tokens"].shape == (3, max(lengths[4], lengths[0], lengths[2]), model.text_tower.feature_dim)
    assert b["text_mask"].sum(1).tolist() == [lengths[4], lengths[0], lengths[2]]
    assert not b["text_tokens"][~b["text_mask"]].any()  # padding is zero
    # the mean of the cached token states is the cached pooled feature (both float16)
    pooled = (b["text_tokens"].float().sum(1) / b["text_mask"].sum(1, keepdim=True).clamp(min=1))
    assert torch.allclose(pooled, b["text"].float(), atol=2e-2)
    # and an attention model at a zero query embeds the corpus as the mean-pooling model does
    with torch.no_grad():
        a = model.forward_features(b)["note"]
        m = mean_model.forward_features(b)["note"]
    assert torch.allclose(a, m, atol=1e-2)


def test_attention_cache_reuses_the_mean_entrys_photos_and_runs_only_the_texts(corpus, monkeypatch):
    mean_feats = F.corpus_features(corpus, UniNoteModel(tiny_config()), progress=False)
    model = UniNoteModel(tiny_config())
    model.use_token_pooling()

    def no_photos(*args, **kwargs):
        raise AssertionError("the photos were run again")

    monkeypatch.setattr(F, "_photo_part", no_photos)
    feats = F.corpus_features(corpus, model, progress=False)
    assert feats.info["photos_from_cache"] and feats.tokens is not None
    for k in ("image", "image_owner", "image_index", "region"):
        assert torch.equal(getattr(feats, k), getattr(mean_feats, k))
    assert torch.allclose(feats.text.float(), mean_feats.text.float(), atol=1e-3)


def test_token_batch_pads_ragged_texts_and_empty_ones():
    def feats(lengths):
        tokens = torch.arange(sum(lengths) * 2, dtype=torch.float16).reshape(-1, 2) + 1
        n = len(lengths)
        return F.CorpusFeatures([f"n{i}" for i in range(n)], torch.zeros(n, 2).half(), torch.ones(n, dtype=torch.bool),
                                torch.zeros(0, 2).half(), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                                torch.zeros(0, 1, 2).half(), tokens=tokens,
                                token_offsets=torch.tensor([0] + lengths).cumsum(0))

    f = feats([2, 0, 3])  # the middle note has no text
    states, mask = f.token_batch(torch.tensor([2, 1, 0]))
    assert mask.tolist() == [[True, True, True], [False, False, False], [True, True, False]]
    assert torch.equal(states[0], f.tokens[2:5]) and not states[1].any()
    assert torch.equal(states[2, :2], f.tokens[0:2]) and not states[2, 2].any()
    states, mask = feats([0, 0]).token_batch(torch.tensor([0, 1]))  # a corpus of empty texts
    assert states.shape == (2, 1, 2) and not mask.any() and not states.any()


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_subset_features_equals_the_batch_of_the_same_rows(corpus, pooling):
    model = UniNoteModel(tiny_config())
    if pooling == "attention":
        model.use_token_pooling()
    feats = F.corpus_features(corpus, model, progress=False)
    ids = [feats.note_ids[i] for i in (7, 2, 11, 0)]
    part = F.subset_features(feats, ids)
    assert part.note_ids == ids and len(part) == 4
    whole, sub = feats.batch(feats.rows_of(ids)), part.batch(np.arange(4))
    assert set(whole) == set(sub) and ("text_tokens" in sub) == (pooling == "attention")
    for k in whole:
        if k != "image_rows":
            assert torch.equal(whole[k], sub[k]), k
    assert torch.equal(part.image_index, feats.image_index[whole["image_rows"]])
