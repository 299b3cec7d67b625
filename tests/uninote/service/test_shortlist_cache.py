"""A big version's shortlist table is built once, kept beside the version, and loaded after."""

from __future__ import annotations

import logging

import numpy as np

from uninote.embeddings import NoteEmbeddings
from uninote.index import Retriever
from uninote.index.synthetic import synthetic_embeddings
from uninote.service.types import ServedVersion
from uninote.service.versions import shortlist_table


def _served(folder) -> ServedVersion:
    return ServedVersion("v", folder, None, NoteEmbeddings.load(folder / "embeddings"),
                         Retriever.load(folder / "index"))


def test_shortlist_table_is_kept_and_loaded_like_the_built_one(tmp_path, monkeypatch, caplog):
    emb = synthetic_embeddings(500, dim=128, seed=3)
    emb.save(tmp_path / "embeddings", regions=False)
    Retriever(emb).save(tmp_path / "index")
    fresh = _served(tmp_path)
    expected = fresh.retriever.table("note", 64).vectors.copy()
    hits = [fresh.retriever.search(n, k=7, strategy="adaptive") for n in emb.note_ids[:20]]

    first = _served(tmp_path)
    shortlist_table(first)
    (saved,) = (tmp_path / "cache").glob("note-d64-*.npy")
    np.testing.assert_array_equal(np.load(saved), expected)

    built = []
    real = Retriever.table
    monkeypatch.setattr(Retriever, "table", lambda self, g, d: built.append((g, d)) or real(self, g, d))
    again = _served(tmp_path)
    shortlist_table(again)
    assert ("note", 64) not in built  # loaded, not streamed from the full-dim map
    assert [again.retriever.search(n, k=7, strategy="adaptive") for n in emb.note_ids[:20]] == hits

    np.save(saved, expected[:, :32])  # a damaged copy is refused and built again
    with caplog.at_level(logging.WARNING):
        damaged = _served(tmp_path)
        shortlist_table(damaged)
    assert "building the shortlist table again" in caplog.text
    np.testing.assert_array_equal(np.load(saved), expected)
    assert [damaged.retriever.search(n, k=7, strategy="adaptive") for n in emb.note_ids[:20]] == hits
