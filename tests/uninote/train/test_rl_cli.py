"""``uninote train-rl`` end to end on a tiny corpus: grades from a SQLite store or an export folder."""

import json
import random

import pytest
from PIL import Image

from annotations.store import AnnotationStore
from uninote.cli.main import main
from uninote.model.config import UniNoteConfig
from uninote.model.uninote import UniNoteModel


@pytest.fixture
def graded_store(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "cat"
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(20):
        Image.new("RGB", (32, 32), [(200, 0, 0), (0, 0, 200)][i % 2]).save(root / "images" / f"{i}.png")
        lines.append(json.dumps({"note_id": f"p{i}", "title": f"thing {i % 2}", "images": [f"images/{i}.png"]}))
    (root / "notes.jsonl").write_text("\n".join(lines) + "\n")
    UniNoteModel(UniNoteConfig(text_tower="tiny", image_tower="tiny", embed_dim=16, matryoshka_dims=[8, 16],
                               hidden_dim=32, tiny_width=16, n_regions=2, image_size=32)).save_pretrained(tmp_path / "sft")
    url = f"sqlite:///{tmp_path / 'a.db'}"
    from uninote.data import load_corpus

    corpus = load_corpus(root)
    rng = random.Random(0)
    with AnnotationStore(url) as store:
        store.register_notes(corpus.name, corpus.notes)
        for q in range(10):
            for c in rng.sample([c for c in range(20) if c != q], 4):
                store.submit_grade("ana", f"p{q}", f"p{c}", 3 if q % 2 == c % 2 else 0)
    return tmp_path, url, root


ARGS = ["--steps", "4", "--queries-per-step", "4", "--group-size", "4", "--rank-k", "3", "--pool-size", "6",
        "--rm-epochs", "2", "--device", "cpu", "--quiet", "--matryoshka-dims", "8", "16",
        "--matryoshka-weights", "1", "2"]


def test_train_rl_from_store_writes_checkpoint(graded_store, capsys):
    tmp, url, root = graded_store
    rc = main(["train-rl", "--init", str(tmp / "sft"), "--db", url, "--corpus", str(root), "--out",
               str(tmp / "rl"), "--max-pairs", "30", *ARGS])
    assert rc == 0
    assert "RL done: 4 steps, 30 graded pairs" in capsys.readouterr().out
    cfg = json.loads((tmp / "rl" / "training_config.json").read_text())
    assert cfg["rl"]["matryoshka_weights"] == [1.0, 2.0] and cfg["reward_data_fingerprint"]
    metrics = json.loads((tmp / "rl" / "metrics.json").read_text())
    assert metrics["dim_weights"] == pytest.approx([1 / 3, 2 / 3])
    assert metrics["reward_data"]["pairs"] == 30
    assert metrics["warnings"] == []  # one annotator, nothing to disagree with
    # RL switched on attention pooling of token states and trained its query; the checkpoint serves
    assert metrics["text_pooling"] == "attention" and metrics["text_pool_query_norm"] > 0
    rl = UniNoteModel.from_pretrained(tmp / "rl")
    assert rl.config.text_pooling == "attention"
    from uninote.data import load_corpus

    corpus = load_corpus(root)
    emb = rl.embed_corpus(corpus, progress=False)
    query = rl.encode_query(corpus.notes[3], corpus.root)
    assert abs(float(emb.note[3] @ query.note) - 1.0) < 1e-2  # cached token states = the live tower


def test_train_rl_warns_when_graders_disagree_a_lot(graded_store, capsys):
    tmp, url, root = graded_store
    with AnnotationStore(url) as store:  # a second grader flips every other pair: ~50 % disagreement
        for i, j in enumerate(store.judgments()):
            store.submit_grade("bob", j.query_id, j.candidate_id, 3 - j.grade if i % 2 else j.grade)
    rc = main(["train-rl", "--init", str(tmp / "sft"), "--db", url, "--corpus", str(root), "--out",
               str(tmp / "rl"), *ARGS])
    assert rc == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp / "rl" / "metrics.json").read_text())
    assert metrics["reward_data"]["estimated_error_rate"] >= 0.15
    assert len(metrics["warnings"]) == 1 and "graders disagree" in metrics["warnings"][0]
    assert "WARNING: graders disagree" in out


def test_train_rl_from_export_folder_and_errors(graded_store, capsys):
    tmp, url, root = graded_store
    assert main(["export-rewards", "--db", url, "--out", str(tmp / "export")]) == 0
    capsys.readouterr()
    assert main(["train-rl", "--init", str(tmp / "sft"), "--rewards", str(tmp / "export"), "--corpus", str(root),
                 "--out", str(tmp / "rl2"), *ARGS]) == 0
    assert json.loads((tmp / "rl2" / "metrics.json").read_text())["reward_data"]["pairs"] == 40
    # the store records the corpus by name only: without --corpus it is looked up and reported clearly
    rc = main(["train-rl", "--init", str(tmp / "sft"), "--db", url, "--out", str(tmp / "rl3"), *ARGS])
    assert rc == 2
    assert "--corpus" in capsys.readouterr().err
    rc = main(["train-rl", "--init", str(tmp / "sft"), "--db", url, "--corpus", str(root), "--out",
               str(tmp / "rl4"), "--temperature", "0", *ARGS])
    assert rc == 2


def _parse(argv):
    import argparse

    from uninote.cli import train_rl

    parser = argparse.ArgumentParser()
    train_rl.register(parser.add_subparsers())
    return parser, parser.parse_args(["train-rl", "--init", "i", "--db", "sqlite:///x.db", "--out", "o", *argv])


def test_train_rl_flags_override_config_file_and_unset_flags_keep_it(tmp_path):
    from uninote.cli.train_rl import resolve_config
    from uninote.train.rl_config import RLConfig

    RLConfig(steps=7, temperature=0.05).save(tmp_path / "rl.json")
    _, args = _parse(["--config", str(tmp_path / "rl.json"), "--steps", "9", "--frozen-modules", "--no-rm-queries"])
    cfg = resolve_config(args)
    assert (cfg.steps, cfg.temperature, cfg.frozen_modules, cfg.rm_queries) == (9, 0.05, [], False)
    _, args = _parse([])
    assert resolve_config(args) == RLConfig()


def test_train_rl_help_shows_each_real_default_once():
    parser, _ = _parse([])
    sub = next(a for a in parser._actions if a.choices and "train-rl" in a.choices).choices["train-rl"]
    text = sub.format_help()
    assert "(default: None)" not in text
    assert "(default: ['image_head'])" in text and "(default: 0.02)" in text


@pytest.mark.parametrize("bins", [0, 4])  # 4: with colour histograms kept beside the maps
def test_train_rl_starts_from_a_checkpoint_with_trained_image_blocks(graded_store, bins):
    import shutil

    import torch

    tmp, url, root = graded_store
    shutil.rmtree(tmp / "sft")
    sft = UniNoteModel(UniNoteConfig(text_tower="tiny", image_tower="tiny", embed_dim=16, matryoshka_dims=[8, 16],
                                     hidden_dim=32, tiny_width=16, n_regions=2, image_size=32,
                                     image_trained_blocks=1, image_colour_bins=bins))
    with torch.no_grad():
        sft.image_tower.net[2].weight.mul_(1.5)  # blocks unlike the tower's init
    sft.save_pretrained(tmp / "sft")
    rc = main(["train-rl", "--init", str(tmp / "sft"), "--db", url, "--corpus", str(root), "--out",
               str(tmp / "rl"), *ARGS])
    assert rc == 0
    rl = UniNoteModel.from_pretrained(tmp / "rl")
    assert rl.config.image_trained_blocks == 1 and rl.config.image_colour_bins == bins
    assert torch.equal(rl.image_tower.net[2].weight, sft.image_tower.net[2].weight)  # RL leaves the blocks
    assert rl.version != sft.version  # its heads moved
    from uninote.data import load_corpus

    corpus = load_corpus(root)
    emb = rl.embed_corpus(corpus, progress=False)
    query = rl.encode_query(corpus.notes[3], corpus.root)
    assert abs(float(emb.image[3] @ query.images[0]) - 1.0) < 1e-3


def test_train_rl_starts_from_a_checkpoint_with_colour_histograms(graded_store):
    import shutil

    from uninote.data import load_corpus

    tmp, url, root = graded_store
    shutil.rmtree(tmp / "sft")
    sft = UniNoteModel(UniNoteConfig(text_tower="tiny", image_tower="tiny", embed_dim=16, matryoshka_dims=[8, 16],
                                     hidden_dim=32, tiny_width=16, n_regions=2, image_size=32,
                                     image_colour_bins=4))
    sft.save_pretrained(tmp / "sft")
    rc = main(["train-rl", "--init", str(tmp / "sft"), "--db", url, "--corpus", str(root), "--out",
               str(tmp / "rl"), *ARGS])
    assert rc == 0
    rl = UniNoteModel.from_pretrained(tmp / "rl")
    assert rl.config.image_colour_bins == 4 and rl.version != sft.version
    corpus = load_corpus(root)
    emb = rl.embed_corpus(corpus, progress=False)
    query = rl.encode_query(corpus.notes[3], corpus.root)  # an upload's histogram is the corpus photo's
    assert abs(float(emb.image[3] @ query.images[0]) - 1.0) < 1e-3
