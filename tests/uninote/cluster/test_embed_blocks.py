"""The Ray embed driver hands Ray one small row per shard, not the shard's records: the notes go
to block files on the output storage, one block at a time (no Ray needed for this)."""

import json

from uninote.cluster.embed import BLOCKS, STAGING, write_blocks
from uninote.data import load_corpus
from uninote.data.note import Note
from uninote.embedding_store import shard_corpus
from uninote.model.testing import make_synthetic_corpus


def test_blocks_are_files_and_the_rows_only_name_them(tmp_path):
    corpus = load_corpus(make_synthetic_corpus(tmp_path / "corpus", n_notes=23, seed=0))
    out = tmp_path / "emb"
    rows = write_blocks(corpus, [0, 2, 4], 5, out)
    assert [r["shard"] for r in rows] == [0, 2, 4]
    assert all(set(r) == {"shard", "path"} for r in rows)  # what the object store holds per shard
    assert sum(len(json.dumps(r)) for r in rows) < 600
    for r in rows:
        block = json.loads(open(r["path"]).read())
        want = shard_corpus(corpus, r["shard"] * 5, 5)
        assert [Note.from_json(n) for n in block["notes"]] == list(want.notes)
        assert block["name"] == corpus.name
    assert len(json.loads(open(rows[-1]["path"]).read())["notes"]) == 3  # the last, short shard
    assert sorted(p.name for p in (out / STAGING / BLOCKS).iterdir()) == \
        ["shard-00000.json", "shard-00002.json", "shard-00004.json"]  # no temporary files left
