"""Any Hugging Face backbone works: tiny random BERT / ViT saved to a local folder."""

import pytest
import torch

from uninote.model import UniNoteModel
from uninote.model.testing import tiny_config


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast, ViTConfig, ViTModel

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz") + ["red", "shirt"]
    (root / "vocab.txt").write_text("\n".join(vocab))
    tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    bert = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32, max_position_embeddings=64))
    bert.save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    vit = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=32))
    vit.save_pretrained(root / "vit")
    return root


def test_hf_text_and_vision_backbones_from_local_folders(hf_folders, corpus, tmp_path):
    cfg = tiny_config(text_tower=str(hf_folders / "bert"), image_tower=str(hf_folders / "vit"))
    model = UniNoteModel(cfg)
    assert model.text_tower.feature_dim == 16 and model.image_tower.feature_dim == 16
    out = model.encode_note(corpus.notes[1:4], corpus.root)
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    regions = model.encode_regions([__import__("PIL.Image").Image.new("RGB", (40, 30), "red")])
    assert regions.shape == (1, 4, 32)  # 4x4 ViT patch grid pooled to 2x2
    model.save_pretrained(tmp_path / "ck")
    again = UniNoteModel.from_pretrained(tmp_path / "ck")
    assert torch.equal(again.encode_note(corpus.notes[1:4], corpus.root), out)


def test_hf_token_states_pool_to_the_mean_and_to_attention(hf_folders):
    """A BERT's padded batch: its token states' masked mean is its features; padding weighs nothing."""
    model = UniNoteModel(tiny_config(text_tower=str(hf_folders / "bert")))
    texts = ["red shirt", "a much longer red shirt title"]
    with torch.no_grad():
        states, mask = model.text_tokens(texts)
        assert mask.sum(1).tolist()[0] < mask.shape[1]  # the short text is padded
        assert torch.allclose(model.text_features(texts), (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True),
                              atol=1e-6)
        model.use_token_pooling()
        model.text_pool.query.normal_()
        alone = model.encode_text(texts[:1])  # no padding when alone
        assert torch.allclose(model.encode_text(texts)[:1], alone, atol=1e-5)


def test_unloadable_backbone_says_what_to_give(tmp_path):
    from uninote.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot load text backbone"):
        UniNoteModel(tiny_config(text_tower=str(tmp_path / "missing")))


def test_hf_backbones_through_onnx_runtime_match_torch(hf_folders, tmp_path, monkeypatch, runtimes_agree):
    from PIL import Image

    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(text_tower=str(hf_folders / "bert"), image_tower=str(hf_folders / "vit"))
    runtimes_agree(cfg, ["red shirt", "", "a much longer red shirt title"],
                   [Image.new("RGB", (40, 30), "red")] * 2, atol=1e-5)
