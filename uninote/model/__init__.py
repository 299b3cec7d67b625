"""The UniNote model: towers, heads, fusion; baselines with the same inference API."""

from uninote.model.baselines import BASELINES, load_baseline
from uninote.model.config import UniNoteConfig
from uninote.model.towers import build_image_tower, build_text_tower
from uninote.model.uninote import UniNoteModel


def load_model(spec: str, device: str = "cpu", runtime: str | None = None):
    """A model by spec: ``baseline:text|image|concat``, a checkpoint folder or a Hub id.

    ``runtime`` ('auto' | 'onnx' | 'torch' | 'onnx-int8') runs its frozen backbones; None: ``$UNINOTE_RUNTIME``."""
    if spec in BASELINES or spec.startswith("baseline:"):
        model = load_baseline(spec)
    else:
        model = UniNoteModel.from_pretrained(spec, device=device)
    model.runtime = runtime
    return model


__all__ = ["UniNoteConfig", "UniNoteModel", "build_image_tower", "build_text_tower", "load_model"]
