"""Pages a read of a memory-mapped version mapped into the process are handed back."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from uninote.embeddings import NoteEmbeddings
from uninote.index import Retriever
from uninote.index.synthetic import synthetic_embeddings
from uninote.service.pages import release_mapped
from uninote.service.types import ServedVersion

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")


def _rss_file() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssFile:"))


def test_release_mapped_drops_the_file_pages_a_scan_mapped(tmp_path):
    emb = synthetic_embeddings(6_000, dim=768, seed=0)  # 18 MB per one-vector table as float32
    emb.save(tmp_path / "e", regions=False, dtypes="float32")
    Retriever(emb).save(tmp_path / "index")
    mapped = NoteEmbeddings.load(tmp_path / "e")
    retriever = Retriever.load(tmp_path / "index")
    served = ServedVersion("v", tmp_path, None, mapped, retriever)
    before = _rss_file()
    first = retriever.search(emb.note_ids[5], k=5, strategy="exact")  # a full-dim scan of the note table
    total = float(np.asarray(mapped.note, np.float32).sum())  # and every row of the embeddings
    scanned = _rss_file()
    assert scanned - before > 15e6  # the tables' pages are mapped in now
    assert release_mapped(served) >= 2
    assert _rss_file() - before < 0.2 * (scanned - before)
    assert retriever.search(emb.note_ids[5], k=5, strategy="exact") == first  # the maps still read
    assert float(np.asarray(mapped.note, np.float32).sum()) == total
