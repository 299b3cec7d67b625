"""Model version folders (docs/DESIGN.md, "Model version folder"): make, write, load; path helpers.

``write_version`` is the one writer of a version folder, used by the first-run build and by the
trainer worker: it fills ``<root>/.tmp-<version>-<pid>/`` (model/, embeddings/, index/,
eval.json, READY last) and renames it to ``<root>/<version>/``, so a folder with READY is always
complete. The database records a version's folder relative to the versions root
(``stored_path`` / ``resolve_path``), so a copied home keeps working; absolute rows still resolve.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

from uninote.embeddings import NoteEmbeddings
from uninote.errors import UniNoteError
from uninote.fileio import atomic_write
from uninote.index import Retriever
from uninote.model import UniNoteConfig, UniNoteModel, load_model
from uninote.service.config import DEMO_SFT, ServiceConfig
from uninote.service.types import ServedVersion
from uninote.train.sft import train_sft
from uninote.train.sft_config import SFTConfig


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def stored_path(root: Path, folder: Path) -> str:
    """How the database records ``folder``: relative to the versions root when under it."""
    folder, root = Path(folder).resolve(), Path(root).resolve()
    try:
        return str(folder.relative_to(root))
    except ValueError:
        return str(folder)


def resolve_path(root: Path, path: str) -> Path:
    """The folder a database row names: relative rows under the versions root, absolute as they are."""
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


COMPLETION_FILE = "completion.json"  # a version built on part of the corpus (uninote/service/completion.py)


def completion_pending(folder: Path) -> bool:
    """True for a version folder built on part of the corpus whose other notes are not all added yet."""
    state = read_json(Path(folder) / COMPLETION_FILE)
    return bool(state) and not state.get("done")


def sft_staging(config: ServiceConfig) -> Path:
    return config.versions_root / ".sft-first-run" / "model"


def make_model(config: ServiceConfig, corpus, spec: str, status: Callable[[str], None]):
    """The model for a spec (see ``ServiceConfig.model``); 'default' trains SFT here."""

    if spec == "config":  # a freshly initialised model from model_config (tests, smoke runs)
        return UniNoteModel(UniNoteConfig(**config.model_config))
    if spec != "default":
        return load_model(spec)

    cfg = SFTConfig(**{**DEMO_SFT, **config.sft_overrides})
    status(f"training the default SFT model ({cfg.epochs} epochs)")
    model, _ = train_sft(corpus, sft_staging(config), cfg, progress=True)
    return model


def eval_file(report, corpus: str, modalities: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    """(eval.json content, ndcg@10 summary for the store, of ``modalities`` or all) from an
    ``uninote.eval`` report."""
    data = {"n_queries": report.n_queries, "results": report.results, "corpus": corpus}
    summary = {f"{r['query_modality']}/{r['granularity']}/ndcg@10@{r['dim']}": r["ndcg@10"]
               for r in report.results if modalities is None or r["query_modality"] in modalities}
    return data, summary


def write_version(root: Path, version: str, model, embeddings, *, spec: str | None = None,
                  model_files: Iterable[Path] = (),
                  evaluation: dict | Callable[[NoteEmbeddings], dict] | None = None,
                  extra_files: dict[str, bytes] | None = None) -> Path:
    """Publish ``<root>/<version>/`` and return it.

    model/ holds ``model.save_pretrained`` (or, for a baseline without weights, ``spec.json``
    naming ``spec``) plus copies of ``model_files`` (training config, metrics, reward model);
    then embeddings/, index/, ``evaluation`` as eval.json when given, READY last. An existing
    complete folder of the same version (same weights published before) is kept as it is.

    ``embeddings`` is a ``NoteEmbeddings`` to save, or a function that writes them as shards into
    the folder it is given (``embed_to_disk``, ``embed_features_to_disk``): the index is then
    built from the memory-mapped shards and written block by block, so peak RAM does not grow
    with the corpus. ``evaluation`` may be a function of the stored embeddings. ``extra_files``
    (name -> bytes) are written into the folder before READY.
    """

    root = Path(root)
    final = root / version
    tmp = root / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp / "model")
        else:  # baselines have no weights of their own: record how to rebuild them
            (tmp / "model").mkdir(parents=True)
            (tmp / "model" / "spec.json").write_text(json.dumps({"load_model": spec}))
        for src in map(Path, model_files):
            if src.is_dir():
                shutil.copytree(src, tmp / "model" / src.name)
            elif src.exists():
                shutil.copy2(src, tmp / "model" / src.name)
        if callable(embeddings):
            embeddings(tmp / "embeddings")
        else:
            embeddings.save(tmp / "embeddings")
        stored = NoteEmbeddings.load(tmp / "embeddings")
        Retriever(stored).save(tmp / "index")
        if callable(evaluation):
            evaluation = evaluation(stored)
        if evaluation is not None:
            atomic_write(tmp / "eval.json", json.dumps(evaluation, indent=2).encode())
        for name, data in (extra_files or {}).items():
            atomic_write(tmp / name, data)
        (tmp / "READY").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if final.exists() and not (final / "READY").exists():
            shutil.rmtree(final)  # an incomplete folder left by a crash
        if not final.exists():
            tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written folder behind
    return final


def load_version(version: str, folder: Path, index_uri: str = "") -> ServedVersion:
    """Everything a search needs from a complete (READY) version folder; with ``index_uri``
    its searches go to the version's Milvus collections there."""

    if not (folder / "READY").exists():
        raise UniNoteError(f"{folder}: model version {version} is incomplete (no READY file)")
    spec = folder / "model" / "spec.json"
    if spec.exists():
        model = load_model(json.loads(spec.read_text())["load_model"])
    else:
        model = UniNoteModel.from_pretrained(folder / "model")
    embeddings = NoteEmbeddings.load(folder / "embeddings")
    # a version still being completed has more notes in its shards than in the index saved with
    # its first build: serve the shards as they are (the completion rewrites index/ at the end)
    if (folder / "index").exists() and not completion_pending(folder):
        retriever = Retriever.load(folder / "index", model_version=embeddings.model_version)
    else:
        retriever = Retriever(embeddings)
    if index_uri:
        retriever.use_milvus(index_uri)
    return ServedVersion(version, folder, model, embeddings, retriever)
