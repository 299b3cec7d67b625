"""Simulated annotators grade queue pairs through the real store on a tiny catalogue corpus."""

import json
import random

import pytest
from PIL import Image

from annotations.store import AnnotationStore
from uninote.data import load_corpus
from uninote.errors import ConfigError
from uninote.model.config import UniNoteConfig
from uninote.model.uninote import UniNoteModel
from uninote.simulate import SimulationConfig, noisy_grade, simulate, true_grade

TYPES = [("Shirts", "Topwear"), ("Tshirts", "Topwear"), ("Jeans", "Bottomwear"), ("Skirts", "Bottomwear")]
COLOURS = {"Red": (200, 30, 30), "Blue": (30, 30, 200), "Black": (10, 10, 10)}


def write_tiny_catalogue(root, n=36):
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        (art, sub), (colour, rgb) = TYPES[i % 4], list(COLOURS.items())[(i // 4) % 3]
        Image.new("RGB", (32, 32), rgb).save(root / "images" / f"{i}.png")
        meta = {"articleType": art, "subCategory": sub, "baseColour": colour}
        lines.append(json.dumps({"note_id": f"p{i}", "title": f"{colour} {art}", "images": [f"images/{i}.png"],
                                 "meta": meta}))
    (root / "notes.jsonl").write_text("\n".join(lines) + "\n")
    return root


def tiny_model():
    return UniNoteModel(UniNoteConfig(text_tower="tiny", image_tower="tiny", embed_dim=16,
                                      matryoshka_dims=[8, 16], hidden_dim=32, tiny_width=16, n_regions=2,
                                      image_size=32))


def test_noisy_grade_error_rate_and_never_the_true_grade_when_flipped():
    rng = random.Random(0)
    grades = [noisy_grade(2, 0.25, rng) for _ in range(4000)]
    flipped = [g for g in grades if g != 2]
    assert len(flipped) / len(grades) == pytest.approx(0.25, abs=0.03)
    assert set(flipped) == {0, 1, 3}
    assert all(noisy_grade(g, 0.0, rng) == g for g in range(4))


def test_simulate_grades_queue_pairs_into_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    corpus = load_corpus(write_tiny_catalogue(tmp_path / "cat"))
    model = tiny_model()
    emb = model.embed_corpus(corpus, progress=False)
    with AnnotationStore(f"sqlite:///{tmp_path / 'a.db'}") as store:
        report = simulate(store, corpus, emb, SimulationConfig(pairs=40, error_rate=0.0, annotators=2, k=5),
                          model_version=model.version)
        judgments = store.judgments()
        assert report["pairs"] == 40
        assert len({(j.query_id, j.candidate_id) for j in judgments}) == 40
        assert {j.annotator for j in judgments} == {"sim-0", "sim-1"}
        for j in judgments:  # error rate 0: every grade is the catalogue rule
            assert j.grade == true_grade(corpus, j.query_id, j.candidate_id)
            assert j.model_version == model.version and j.task_id is not None
        # a second run adds new pairs on top, never re-grading the same ones, and plans new queries
        from annotations.queue import LabelQueue

        before = LabelQueue(store).queries()
        simulate(store, corpus, emb, SimulationConfig(pairs=10, error_rate=1.0, k=5, seed=1))
        again = store.judgments()
        assert {j.query_id for j in again[len(judgments):]} - before
        pairs = [(j.query_id, j.candidate_id) for j in again if j.annotator == "sim-0"]
        assert len(pairs) == len(set(pairs))
        flipped = [j for j in again[len(judgments):] if j.annotator == "sim-0"]
        assert flipped and all(j.grade != true_grade(corpus, j.query_id, j.candidate_id) for j in flipped)


def test_simulate_cli(tmp_path, monkeypatch, capsys):
    from uninote.cli.main import main

    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    write_tiny_catalogue(tmp_path / "cat")
    tiny_model().save_pretrained(tmp_path / "sft")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    rc = main(["simulate-annotators", "--db", db, "--corpus", str(tmp_path / "cat"), "--model",
               str(tmp_path / "sft"), "--pairs", "25", "--error-rate", "0.1", "--annotators", "1", "--quiet",
               "--query-selection", "coverage", "--random-per-query", "3"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == 25
    assert (out["config"]["query_selection"], out["config"]["random_per_query"]) == ("coverage", 3)
    with AnnotationStore(db) as store:
        assert len(store.judgments()) == 25
    with pytest.raises(SystemExit):
        main(["simulate-annotators", "--db", db])  # missing required arguments


def test_tasks_per_query_spreads_the_budget_over_more_queries(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    corpus = load_corpus(write_tiny_catalogue(tmp_path / "cat"))
    emb = tiny_model().embed_corpus(corpus, progress=False)
    per_query = {}
    for cap in (0, 2):
        with AnnotationStore(f"sqlite:///{tmp_path / f'q{cap}.db'}") as store:
            report = simulate(store, corpus, emb, SimulationConfig(pairs=20, k=5, tasks_per_query=cap))
            counts = {}
            for j in store.judgments():
                counts[j.query_id] = counts.get(j.query_id, 0) + 1
        assert report["pairs"] == 20
        per_query[cap] = counts
    assert max(per_query[2].values()) <= 2
    assert len(per_query[2]) >= 10 > len(per_query[0])
    with pytest.raises(ConfigError):
        SimulationConfig(tasks_per_query=-1).validate()


def test_coverage_query_selection_grades_every_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("UNINOTE_CACHE", str(tmp_path / "cache"))
    corpus = load_corpus(write_tiny_catalogue(tmp_path / "cat"))
    emb = tiny_model().embed_corpus(corpus, progress=False)
    with AnnotationStore(f"sqlite:///{tmp_path / 'c.db'}") as store:
        report = simulate(store, corpus, emb, SimulationConfig(pairs=12, k=5, tasks_per_query=3,
                                                               query_selection="coverage"))
        queries = {j.query_id for j in store.judgments()}
    assert report["pairs"] == 12 and report["config"]["query_selection"] == "coverage"
    from annotations.planning import choose_queries

    assert queries == set(choose_queries(emb.note, list(emb.note_ids), 4, "coverage")[:4])
    with pytest.raises(ConfigError):
        SimulationConfig(query_selection="popular").validate()


def test_neighbour_lists_stream_over_a_multi_shard_version(tmp_path):
    from uninote.embeddings import NoteEmbeddings
    from uninote.index.scoring import top_k
    from uninote.index.synthetic import synthetic_embeddings
    from uninote.shards import ShardedArray
    from uninote.simulate import neighbour_lists

    emb = synthetic_embeddings(230, dim=32, n_clusters=5, seed=2)
    emb.save(tmp_path / "e", shard_notes=60)
    mapped = NoteEmbeddings.load(tmp_path / "e")
    assert isinstance(mapped.note, ShardedArray) and len(mapped.note.parts) == 4
    queries = emb.note_ids[::19]
    lists = neighbour_lists(mapped, queries, [8, 32], depth=12, block_rows=50)
    for dim, key in ((8, "dim=8/granularity=note/strategy=exact"), (32, "dim=full/granularity=note/strategy=exact")):
        small = emb.truncate(dim)
        for q in queries:  # brute force over the whole in-RAM matrix
            r = small.row(q)
            expected = [small.note_ids[i] for i in top_k(small.note @ small.note[r], 12, exclude=[r])]
            assert lists[key][q] == expected
