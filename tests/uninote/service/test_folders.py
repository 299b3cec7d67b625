"""The one writer of model version folders: complete or absent, and paths stored relative to the root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uninote.model import UniNoteModel
from uninote.model.testing import tiny_config
from uninote.service.folders import load_version, resolve_path, stored_path, write_version


@pytest.fixture
def built(synthetic_corpus):
    corpus = synthetic_corpus(12)
    model = UniNoteModel(tiny_config())
    embeddings = model.embed_corpus(corpus, progress=False)
    embeddings.model_version = model.version
    return model, embeddings


def test_write_version_publishes_a_complete_folder_and_keeps_extras(tmp_path, built):
    model, embeddings = built
    extra = tmp_path / "work"
    (extra / "reward_model").mkdir(parents=True)
    (extra / "reward_model" / "w.bin").write_bytes(b"x")
    (extra / "metrics.json").write_text("{}")
    folder = write_version(tmp_path / "versions", model.version, model, embeddings,
                           model_files=[extra / "metrics.json", extra / "reward_model", extra / "missing.json"],
                           evaluation={"results": [], "n_queries": 0})
    assert folder == tmp_path / "versions" / model.version
    for part in ("model/config.json", "model/model.safetensors", "model/metrics.json",
                 "model/reward_model/w.bin", "embeddings", "index", "eval.json", "READY"):
        assert (folder / part).exists(), part
    assert json.loads((folder / "eval.json").read_text())["n_queries"] == 0
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == [model.version]  # no .tmp-*
    served = load_version(model.version, folder)
    assert served.retriever.search("n0", k=3)[0].note_id != "n0"


def test_write_version_leaves_nothing_when_it_fails_and_replaces_an_incomplete_folder(tmp_path, built, monkeypatch):
    model, embeddings = built
    root = tmp_path / "versions"
    (root / model.version / "model").mkdir(parents=True)  # a crash left this behind, no READY
    import uninote.index

    def boom(self, directory):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(uninote.index.Retriever, "save", boom)
        with pytest.raises(OSError, match="disk full"):
            write_version(root, model.version, model, embeddings)
    assert sorted(p.name for p in root.iterdir()) == [model.version]
    assert not (root / model.version / "READY").exists()
    write_version(root, model.version, model, embeddings)
    assert (root / model.version / "READY").exists() and (root / model.version / "index").exists()
    stamp = (root / model.version / "READY").read_text()
    (root / model.version / "keep").write_text("same weights published before: kept")
    write_version(root, model.version, model, embeddings)
    assert (root / model.version / "keep").exists() and (root / model.version / "READY").read_text() == stamp


def test_baseline_folders_record_how_to_rebuild_the_model(tmp_path, built):
    _, embeddings = built
    folder = write_version(tmp_path, "baseline", object(), embeddings, spec="baseline:concat")
    assert json.loads((folder / "model" / "spec.json").read_text()) == {"load_model": "baseline:concat"}


def test_paths_are_stored_relative_to_the_versions_root(tmp_path):
    root = tmp_path / "versions"
    assert stored_path(root, root / "v1") == "v1"
    assert stored_path(root, tmp_path / "elsewhere" / "v2") == str((tmp_path / "elsewhere" / "v2").resolve())
    assert resolve_path(root, "v1") == root / "v1"
    assert resolve_path(Path("/other/root"), "/abs/v3") == Path("/abs/v3")  # old absolute rows


def test_a_streamed_version_is_the_saved_one(tmp_path, built, synthetic_corpus):
    """write_version given a writer (what the worker and the first run pass): the embeddings are
    written shard by shard into the folder, the index is built from the mapped shards, and the
    evaluation function sees the stored embeddings; same neighbours as saving them from RAM."""
    from uninote.embedding_store import embed_to_disk
    from uninote.embeddings import NoteEmbeddings
    from uninote.model.features import corpus_features, embed_features_to_disk

    model, embeddings = built
    corpus = synthetic_corpus(12)
    seen = []
    streamed = write_version(tmp_path / "a", model.version, model,
                             lambda out: embed_to_disk(model, corpus, out, shard_notes=5, progress=False),
                             evaluation=lambda e: seen.append(e) or {"n_queries": len(e)})
    saved = write_version(tmp_path / "b", model.version, model, embeddings)
    features = write_version(tmp_path / "c", model.version, model, lambda out: embed_features_to_disk(
        model, corpus_features(corpus, model, progress=False), out, shard_notes=4, progress=False))
    assert json.loads((streamed / "eval.json").read_text()) == {"n_queries": 12}
    assert isinstance(seen[0], NoteEmbeddings) and seen[0].note_ids == embeddings.note_ids
    assert len(json.loads((streamed / "embeddings" / "manifest.json").read_text())["shards"]) == 3
    a, b, c = (load_version(model.version, f).retriever for f in (streamed, saved, features))
    for q in ("n0", "n5", "n11"):
        for strategy in ("exact", "local"):
            ids = [[h.note_id for h in r.search(q, k=5, strategy=strategy)] for r in (a, b, c)]
            assert ids[0] == ids[1] == ids[2]
