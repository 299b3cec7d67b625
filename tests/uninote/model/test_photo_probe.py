"""scripts/photo_probe.py on two synthetic catalogues: probes learn the photos' type and colour."""

import importlib.util
import json
from pathlib import Path

from uninote.data import load_corpus
from uninote.model import UniNoteModel
from uninote.model.testing import make_synthetic_corpus, tiny_config

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "photo_probe.py"


def catalogue(root: Path, seed: int):
    """A synthetic corpus whose metadata names each note's kind and colour as the fashion fields."""
    make_synthetic_corpus(root, n_notes=36, seed=seed, text_only=0, multi_image=0)
    notes = [json.loads(line) for line in (root / "notes.jsonl").read_text().splitlines()]
    for n in notes:
        colour, kind = n["title"].split()[:2]
        n["meta"] = {"articleType": kind, "baseColour": colour, "subCategory": "all"}
    (root / "notes.jsonl").write_text("".join(json.dumps(n) + "\n" for n in notes))
    return load_corpus(root)


def test_the_probe_reads_type_and_colour_from_the_photos(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("photo_probe", SCRIPT)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    model = UniNoteModel(tiny_config(image_colour_bins=4)).eval()
    result = probe.probe(model, catalogue(tmp_path / "fit", 0), catalogue(tmp_path / "val", 1))
    assert result["features"] == model.image_feature_dim and result["queries"] == 36
    assert result["colour_accuracy"] > 0.8  # the histogram names the colour of a plain photo; chance 1/4
    assert result["type_accuracy"] > 0.5  # three kinds: chance is a third
    assert result["ndcg@10"] > 0.6
