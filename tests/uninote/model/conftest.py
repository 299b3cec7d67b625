import pytest


@pytest.fixture
def corpus(synthetic_corpus):
    return synthetic_corpus(24)


@pytest.fixture
def runtimes_agree():
    """``check(cfg, texts, images, atol)``: the ONNX twins of ``cfg``'s towers give torch's token
    states (same masks) and pooled / region photo features, to ``atol`` and cosine 0.99999."""
    import torch

    from uninote.model import UniNoteModel
    from uninote.model.onnx_runtime import OnnxImageTower, OnnxTextTower

    def check(cfg, texts, images, atol):
        onnx, reference = UniNoteModel(cfg), UniNoteModel(cfg)
        onnx.runtime, reference.runtime = "onnx", "torch"
        with torch.inference_mode():
            assert isinstance(onnx.backbone("text"), OnnxTextTower)
            assert isinstance(onnx.backbone("image"), OnnxImageTower)
            states, mask = onnx.text_tokens(texts)
            ref_states, ref_mask = reference.text_tokens(texts)
            assert torch.equal(mask, ref_mask) and torch.allclose(states[mask], ref_states[mask], atol=atol)
            for a, b in zip(onnx.image_features(images), reference.image_features(images)):
                assert a.shape == b.shape and torch.allclose(a, b, atol=atol)
                cos = torch.nn.functional.cosine_similarity(a.flatten(0, -2), b.flatten(0, -2), dim=-1)
                assert cos.min() > 0.99999

    return check
