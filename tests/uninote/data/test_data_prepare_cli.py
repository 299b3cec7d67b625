"""``uninote prepare`` end to end on small corpora."""

from __future__ import annotations

import pytest
from data_testkit import FASHION_ROWS, make_fashion_parquet, make_native

from uninote.cli.main import main
from uninote.data import load_corpus


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))


def test_help_reads_like_documentation(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = capsys.readouterr().out
    for phrase in ("notes.jsonl", "ashraq/fashion-product-images-small", "Qilin", "--split", "--on-error",
                   "examples:"):
        assert phrase in text


def test_prepare_fashion_split_sides(tmp_path, capsys):
    source = make_fashion_parquet(tmp_path / "fashion", rows=FASHION_ROWS * 3)
    sides = {}
    for side in ("train", "test"):
        out = tmp_path / side
        assert main(["prepare", "--source", str(source), "--out", str(out), "--split", side,
                     "--max-queries", "5"]) == 0
        sides[side] = load_corpus(out)
        assert f"wrote {out}: {len(sides[side])} notes" in capsys.readouterr().out
        assert all((out / n.images[0]).is_file() for n in sides[side])
    train_ids, test_ids = ({n.note_id for n in c} for c in sides.values())
    assert not train_ids & test_ids and len(train_ids | test_ids) == 36 and len(test_ids) == 11
    for corpus, ids in ((sides["train"], train_ids), (sides["test"], test_ids)):
        assert len(corpus.qrels) == 5
        assert all(set(row) <= ids for row in corpus.qrels.values())


def test_prepare_native_reports_bad_line_then_skips_it(tmp_path, capsys):
    source = make_native(tmp_path / "src", records=[{"note_id": "n0", "images": ["images/n0.jpg"]}, "{oops"])
    out = tmp_path / "out"
    assert main(["prepare", "--source", str(source), "--out", str(out)]) == 2
    assert f"error: {source / 'notes.jsonl'}:2: malformed JSON" in capsys.readouterr().err
    assert not out.exists()
    with pytest.warns(UserWarning, match="skipped"):
        assert main(["prepare", "--source", str(source), "--out", str(out), "--on-error", "skip"]) == 0
    assert [n.note_id for n in load_corpus(out)] == ["n0"]
