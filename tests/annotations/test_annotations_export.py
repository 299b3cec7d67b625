"""Reward export: tables against a brute-force recomputation, manifest, loader, Hub push, CLI."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from annotations.errors import AnnotationError
from annotations.export import export_rewards, load_rewards, majority_grade
from uninote.cli.main import main


@pytest.fixture
def graded(store):
    rng = random.Random(0)
    for q in ("n0", "n1", "n2"):
        for c in rng.sample([f"n{i}" for i in range(3, 20)], 6):
            for name in rng.sample(["ana", "bob", "cy"], rng.randint(1, 3)):
                store.submit_grade(name, q, c, rng.randint(0, 3))
    store.submit_grade("ana", "n5", "n6", 2)  # a query with a single graded candidate
    return store


def test_majority_grade_ties():
    assert majority_grade([2, 2, 0]) == 2
    assert majority_grade([1, 2]) == 1  # tie, both 0.5 from the mean: the lower
    assert majority_grade([0, 3, 3, 0, 2]) == 3  # tie 0/3; mean 1.6 is 1.4 from 3, 1.6 from 0


def test_export_tables_match_brute_force(graded, tmp_path):
    manifest = export_rewards(graded, tmp_path / "out", min_margin=1.0)
    rewards = load_rewards(tmp_path / "out")
    js = graded.judgments()
    by_pair = {}
    for j in js:
        by_pair.setdefault((j.query_id, j.candidate_id), []).append(j.grade)
    assert len(rewards.pairs) == len(by_pair) == manifest["counts"]["pairs"]
    for p in rewards.pairs:
        grades = by_pair[(p["query_id"], p["candidate_id"])]
        assert p["annotator_count"] == len(grades)
        assert p["mean_grade"] == pytest.approx(statistics.fmean(grades))
        assert sorted(p["grades"]) == sorted(grades)
    # groups: every query with >= 2 graded candidates, by descending mean grade
    assert [g["query_id"] for g in rewards.groups] == ["n0", "n1", "n2"]
    for g in rewards.groups:
        assert g["grades"] == sorted(g["grades"], reverse=True) and g["size"] == 6
    # preferences: brute force over all candidate pairs of a query
    mean = {k: statistics.fmean(v) for k, v in by_pair.items()}
    expected = {(q, a, b) for (q, a), ma in mean.items() for (q2, b), mb in mean.items()
                if q == q2 and ma - mb >= 1.0}  # fmt: skip
    got = {(p["prompt"], p["chosen"], p["rejected"]) for p in rewards.preferences}
    assert got == expected and len(expected) > 0
    assert len(rewards.judgments) == len(js) == manifest["counts"]["judgments"]
    jsonl = (tmp_path / "out" / "preferences.jsonl").read_text().splitlines()
    assert {tuple(json.loads(l)[k] for k in ("prompt", "chosen", "rejected")) for l in jsonl} == got


def test_manifest_fingerprint_and_tamper_check(graded, tmp_path):
    m1 = export_rewards(graded, tmp_path / "a")
    m2 = export_rewards(graded, tmp_path / "b")
    assert m1["fingerprint"] == m2["fingerprint"]
    assert "sqlite:///" in m1["db_url"]
    assert m1["corpus"] == "toy" and m1["corpora"] == ["toy"]
    j = graded.judgments()[0]
    graded.submit_grade(j.annotator, j.query_id, j.candidate_id, (j.grade + 1) % 4)
    assert export_rewards(graded, tmp_path / "c")["fingerprint"] != m1["fingerprint"]
    with open(tmp_path / "a" / "pairs.jsonl", "a") as fh:
        fh.write("{}\n")
    with pytest.raises(AnnotationError, match="pairs.jsonl: missing or changed"):
        load_rewards(tmp_path / "a")
    with pytest.raises(AnnotationError, match="no manifest"):
        load_rewards(tmp_path)


def test_empty_store_exports_empty_tables(store, tmp_path):
    manifest = export_rewards(store, tmp_path / "e")
    rewards = load_rewards(tmp_path / "e")
    assert manifest["counts"]["pairs"] == 0 and rewards.pairs == [] and rewards.groups == []


def test_cli_export_and_push_to_hub(graded, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    hub = tmp_path / "hub"

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, repo_type=None, private=None, exist_ok=False):
            (hub / repo_id).mkdir(parents=True, exist_ok=True)

        def upload_folder(self, folder_path, repo_id, repo_type=None, commit_message=None):
            import shutil

            assert repo_type == "dataset"
            shutil.copytree(folder_path, hub / repo_id, dirs_exist_ok=True)
            return "local://" + repo_id

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = tmp_path / "cli"
    rc = main(["export-rewards", "--db", graded.url, "--out", str(out), "--push-to-hub", "me/grades"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fingerprint" in printed and "local://me/grades" in printed
    pushed = load_rewards(hub / "me" / "grades")
    assert pushed.manifest["fingerprint"] == load_rewards(out).manifest["fingerprint"]


def test_cli_db_commands(graded, tmp_path, capsys):
    assert main(["db", "check", "--db", graded.url]) == 0
    assert '"integrity_check": "ok"' in capsys.readouterr().out
    assert main(["db", "backup", "--db", graded.url, "--out", str(tmp_path / "bk.db")]) == 0
    assert main(["db", "stats", "--db", graded.url]) == 0
    out = capsys.readouterr().out
    assert "kappa_quadratic" in out and "queue sources" in out
    assert main(["db", "backup", "--db", graded.url, "--out", str(tmp_path / "bk.db")]) == 2
    assert "backup target exists" in capsys.readouterr().err
