"""Model version folders (docs/DESIGN.md, "Model version folder"): make, write, load; file helpers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from uninote.errors import UniNoteError
from uninote.service.config import DEMO_SFT, ServiceConfig
from uninote.service.types import ServedVersion


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def sft_staging(config: ServiceConfig) -> Path:
    return config.versions_root / ".sft-first-run" / "model"


def make_model(config: ServiceConfig, corpus, spec: str, status: Callable[[str], None]):
    """The model for a spec (see ``ServiceConfig.model``); 'default' trains SFT here."""
    from uninote.model import UniNoteConfig, UniNoteModel, load_model

    if spec == "config":  # a freshly initialised model from model_config (tests, smoke runs)
        return UniNoteModel(UniNoteConfig(**config.model_config))
    if spec != "default":
        return load_model(spec)
    from uninote.train.sft import train_sft
    from uninote.train.sft_config import SFTConfig

    cfg = SFTConfig(**{**DEMO_SFT, **config.sft_overrides})
    status(f"first run: training the default SFT model ({cfg.epochs} epochs; progress in the console)")
    model, _ = train_sft(corpus, sft_staging(config), cfg, progress=True)
    return model


def write_version(config: ServiceConfig, folder: Path, spec: str, model, embeddings) -> None:
    """model/, embeddings/, index/ then READY last."""
    from uninote.index import Retriever

    folder.mkdir(parents=True, exist_ok=True)
    staging = sft_staging(config)
    if spec == "default" and staging.exists():  # keep train_sft's training_config/metrics files
        import shutil

        shutil.rmtree(folder / "model", ignore_errors=True)
        shutil.move(str(staging), str(folder / "model"))
    elif hasattr(model, "save_pretrained"):
        model.save_pretrained(folder / "model")
    else:  # baselines have no weights of their own: record how to rebuild them
        (folder / "model").mkdir(exist_ok=True)
        (folder / "model" / "spec.json").write_text(json.dumps({"load_model": spec}))
    embeddings.save(folder / "embeddings")
    Retriever(embeddings).save(folder / "index")
    (folder / "READY").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def load_version(version: str, folder: Path) -> ServedVersion:
    """Everything a search needs from a complete (READY) version folder."""
    from uninote.embeddings import NoteEmbeddings
    from uninote.index import Retriever
    from uninote.model import UniNoteModel, load_model

    if not (folder / "READY").exists():
        raise UniNoteError(f"{folder}: model version {version} is incomplete (no READY file)")
    spec = folder / "model" / "spec.json"
    if spec.exists():
        model = load_model(json.loads(spec.read_text())["load_model"])
    else:
        model = UniNoteModel.from_pretrained(folder / "model")
    embeddings = NoteEmbeddings.load(folder / "embeddings")
    if (folder / "index").exists():
        retriever = Retriever.load(folder / "index", model_version=embeddings.model_version)
    else:
        retriever = Retriever(embeddings)
    return ServedVersion(version, folder, model, embeddings, retriever)
