"""Label queue: planning sources, dedup, overlap, leasing under concurrency, skip, undo."""

from __future__ import annotations

import threading
import time

import pytest

from annotations.errors import UnknownNote
from annotations.queue import LabelQueue, QueueConfig, Setting, plan_tasks
from annotations.store import AnnotationStore
from uninote.errors import ConfigError

FULL = "dim=full/granularity=note/strategy=exact"
D64 = "dim=64/granularity=note/strategy=exact"


def test_setting_parse():
    assert Setting.parse(D64) == Setting(64, "note", "exact")
    assert Setting.parse({"dim": 128, "granularity": "image"}) == Setting(128, "image", "exact")
    assert Setting.parse(FULL).key == FULL
    with pytest.raises(ConfigError, match="unknown field"):
        Setting.parse("dims=64")
    versioned = Setting(64, "note", "exact", "rl-1")  # lists of two model versions planned together
    assert versioned.key == D64 + "/version=rl-1" and Setting.parse(versioned.key) == versioned


def test_plan_sources_by_hand():
    cfg = QueueConfig(k=2, boundary_window=1, random_per_query=1, overlap=0.0)
    neighbours = {
        D64: {"q": ["a", "b", "c", "d", "e", "f"]},
        FULL: {"q": ["a", "c", "b", "q", "d", "e", "g"]},  # q itself is dropped
    }
    tasks = {t.candidate_id: t for t in plan_tasks(neighbours, cfg)}
    # top-2: {a,b} at 64, {a,c} at full -> b, c disagree; a agreed (rank 0 everywhere);
    # boundary ranks 1..2: none left besides b/c; d, e, f, g deeper: one drawn at random.
    assert tasks["a"].source == "agreed"
    assert tasks["b"].source == tasks["c"].source == "disagreement"
    assert tasks["b"].detail == {D64: 1, FULL: 2}
    assert (tasks["c"].setting, tasks["c"].rank) == (Setting(None), 1)  # its best-ranked setting
    randoms = [c for c, t in tasks.items() if t.source == "random"]
    assert len(randoms) == 1 and randoms[0] in "defg"
    assert "q" not in tasks and len(tasks) == 4
    order = [t.source for t in plan_tasks(neighbours, cfg)]
    assert order == ["disagreement", "disagreement", "random", "agreed"]


def test_plan_cap_keeps_room_for_the_random_deeper_draws():
    cands = [f"c{i}" for i in range(30)]
    neighbours = {FULL: {"q": cands}}
    cfg = QueueConfig(k=10, boundary_window=2, random_per_query=4, overlap=0.0, max_tasks_per_query=10)
    tasks = plan_tasks(neighbours, cfg)
    assert len(tasks) == 10
    randoms = sorted(t.rank for t in tasks if t.source == "random")
    assert len(randoms) == 4 and all(r >= 12 for r in randoms)  # past the boundary ranks 8..11
    assert sorted(t.rank for t in tasks if t.source == "boundary") == [8, 9, 10, 11]
    assert sorted(t.rank for t in tasks if t.source == "agreed") == [0, 1]  # best ranks fill the rest
    other_seed = plan_tasks(neighbours, QueueConfig(**{**cfg.__dict__, "seed": 1}))
    assert sorted(t.rank for t in other_seed if t.source == "random") != randoms  # drawn, not the first four


def test_plan_boundary_and_overlap_share_and_dedup():
    cands = [f"c{i}" for i in range(30)]
    neighbours = {FULL: {f"q{j}": cands for j in range(40)}}
    cfg = QueueConfig(k=10, boundary_window=2, random_per_query=0, overlap=0.25, max_tasks_per_query=None)
    tasks = plan_tasks(neighbours, cfg)
    per_query = [t for t in tasks if t.query_id == "q0"]
    assert sorted(t.rank for t in per_query if t.source == "boundary") == [8, 9, 10, 11]
    assert sorted(t.rank for t in per_query if t.source == "agreed") == list(range(8))
    assert len({(t.query_id, t.candidate_id) for t in tasks}) == len(tasks) == 40 * 12
    share = sum(t.required_annotations == 2 for t in tasks) / len(tasks)
    assert 0.18 < share < 0.32
    assert plan_tasks(neighbours, cfg) == tasks  # deterministic


def _queue(store, **kw) -> LabelQueue:
    cfg = QueueConfig(k=3, boundary_window=1, random_per_query=0, **kw)
    q = LabelQueue(store, cfg)
    neighbours = {
        D64: {"n0": ["n1", "n2", "n3", "n4", "n5"], "n10": ["n11", "n12", "n13"]},
        FULL: {"n0": ["n1", "n3", "n2", "n6", "n4"], "n10": ["n11", "n12", "n14"]},
    }
    q.add_from_neighbours(neighbours, model_version="v1")
    return q


def test_add_is_deduplicated_and_unknown_notes_add_nothing(store):
    q = _queue(store, overlap=0.0)
    n = store.counts()["label_tasks"]
    report = q.add_from_neighbours({D64: {"n0": ["n1", "n2"]}})
    assert sum(r["added"] for r in report.values()) == 0 and store.counts()["label_tasks"] == n
    with pytest.raises(UnknownNote, match="ghost"):
        q.add_from_neighbours({D64: {"n0": ["n7", "ghost"]}})
    assert store.counts()["label_tasks"] == n


def test_next_task_never_repeats_a_graded_pair(store):
    q = _queue(store, overlap=0.0)
    store.submit_grade("ana", "n0", "n1", 3)  # graded outside the queue
    seen = []
    while (task := q.next_task("ana")) is not None:
        assert q.next_task("ana").id == task.id  # double click: same lease back (refreshed)
        seen.append((task.query_id, task.candidate_id))
        q.submit("ana", task, 1)
    assert ("n0", "n1") not in seen and len(seen) == len(set(seen)) == store.counts()["label_tasks"] - 1
    assert q.next_task("bob") is None  # single-annotator tasks all done
    assert q.pending() == 0


def test_overlap_tasks_go_to_two_different_annotators(store):
    q = _queue(store, overlap=1.0, overlap_annotators=2)
    total = store.counts()["label_tasks"]
    graded = {"ana": set(), "bob": set(), "cy": set()}
    for name in graded:
        while (task := q.next_task(name)) is not None:
            graded[name].add(task.id)
            q.submit(name, task, 2)
    assert graded["ana"] == graded["bob"] and len(graded["ana"]) == total
    assert graded["cy"] == set()  # every task already has its two annotators


def test_skip_and_undo(store):
    q = _queue(store, overlap=0.0)
    first = q.next_task("ana")
    q.skip("ana", first.id)
    second = q.next_task("ana")
    assert second.id != first.id
    assert q.next_task("bob").id == first.id  # a skipped task is free for others
    q.submit("ana", second, 2)
    store.undo("ana")
    assert q.next_task("ana").id == second.id  # the undone pair comes straight back
    assert store.annotator_stats("ana").n_skipped == 1


def test_expired_lease_frees_the_task(db_path):
    store = AnnotationStore(str(db_path))
    from uninote.data.note import Note

    store.register_notes("toy", [Note("a"), Note("b")])
    q = LabelQueue(store, QueueConfig(k=1, boundary_window=0, random_per_query=0, overlap=0.0, lease_s=0.2))
    q.add_from_neighbours({FULL: {"a": ["b"]}})
    assert q.next_task("ana") is not None
    assert q.next_task("bob") is None  # held by ana
    time.sleep(0.3)
    task = q.next_task("bob")
    assert task is not None and task.annotator == "bob"
    assert q.next_task("ana") is None  # bob holds it now
    store.close()


def test_concurrent_annotators_never_share_a_single_task(db_path):
    from uninote.data.note import Note

    stores = [AnnotationStore(str(db_path)) for _ in range(2)]
    stores[0].register_notes("toy", [Note(f"x{i}") for i in range(9)])
    neighbours = {FULL: {"x0": [f"x{i}" for i in range(1, 9)]}}
    cfg = QueueConfig(k=8, boundary_window=0, random_per_query=0, overlap=0.0)
    LabelQueue(stores[0], cfg).add_from_neighbours(neighbours)
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(8)

    def annotator(i: int) -> None:
        q = LabelQueue(stores[i % 2], cfg)
        barrier.wait()
        mine = []
        while (task := q.next_task(f"a{i}")) is not None:
            mine.append(task.id)
            q.submit(f"a{i}", task, i % 4)
        got[f"a{i}"] = mine

    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handed = [t for ids in got.values() for t in ids]
    assert sorted(handed) == list(range(1, 9))  # each of the 8 tasks to exactly one annotator
    assert stores[0].counts()["judgments"] == 8
    for s in stores:
        s.close()


def test_source_report_matches_brute_force(store):
    q = _queue(store, overlap=0.0)
    tasks = []
    for name in ("ana", "bob"):
        for _ in range(3):
            t = q.next_task(name)
            q.submit(name, t, 2 if t.source == "disagreement" else 0)
            tasks.append(t)
    report = {r["source"]: r for r in q.source_report()}
    for source in ("disagreement", "boundary", "agreed"):
        mine = [t for t in tasks if t.source == source]
        assert report[source]["grades"] == len(mine)
        if mine:
            assert report[source]["mean_grade"] == (2.0 if source == "disagreement" else 0.0)
    assert sum(r["tasks"] for r in report.values()) == store.counts()["label_tasks"]


def test_scores_near_the_threshold_are_boundary():
    cfg = QueueConfig(k=2, boundary_window=0, random_per_query=0, overlap=0.0,
                      score_threshold=0.5, score_margin=0.05)  # fmt: skip
    lists = {FULL: {"q": [("a", 0.9), ("b", 0.8), ("c", 0.52), ("d", 0.3)]}}
    tasks = {t.candidate_id: t.source for t in plan_tasks(lists, cfg)}
    assert tasks == {"a": "agreed", "b": "agreed", "c": "boundary"}  # d: far from 0.5, not drawn


def test_choose_queries_coverage_takes_one_query_per_cluster_largest_first():
    import numpy as np

    from annotations.planning import choose_queries

    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 10  # four well-separated directions, clusters of 20, 12, 6 and 2 notes
    sizes = [20, 12, 6, 2]
    vectors = np.concatenate([c + rng.normal(0, 0.3, (n, 8)) for c, n in zip(centres, sizes)])
    cluster = np.repeat(np.arange(4), sizes)
    ids = [f"n{i}" for i in range(len(vectors))]
    order = choose_queries(vectors, ids, 4, "coverage", seed=5)
    assert sorted(order) == sorted(ids)  # every note exactly once (the rest for refills)
    first = [cluster[ids.index(q)] for q in order[:4]]
    assert first == [0, 1, 2, 3]  # one per cluster, larger clusters first
    for q, c in zip(order[:4], first):  # each the member nearest its cluster's mean direction
        members = np.flatnonzero(cluster == c)
        unit = vectors[members] / np.linalg.norm(vectors[members], axis=1, keepdims=True)
        mean = unit.mean(0) / np.linalg.norm(unit.mean(0))
        assert ids.index(q) == members[np.argmax(unit @ mean)]
    random_order = choose_queries(vectors, ids, 4, "random", seed=3)
    assert random_order == [ids[i] for i in np.random.default_rng(3).permutation(len(ids))]
    with pytest.raises(ConfigError):
        choose_queries(vectors, ids, 4, "farthest")


def _open_by_hand(store, name: str, now: float) -> set[int]:
    """The tasks open to ``name`` by the queue's rules, read row by row: fewer other annotators
    finished or hold a live lease than the task needs, and ``name`` never graded or skipped it."""
    from sqlalchemy import select

    from annotations.models import AnnotatorRow, JudgmentRow, LabelTaskRow, TaskAssignmentRow

    with store._db.read() as s:
        ids = {a.name: a.id for a in s.execute(select(AnnotatorRow)).scalars()}
        aid = ids.get(name, -1)
        assignments = s.execute(select(TaskAssignmentRow)).scalars().all()
        graded = {(j.query_id, j.candidate_id) for j in s.execute(select(JudgmentRow)).scalars()
                  if j.annotator_id == aid}
        out = set()
        for t in s.execute(select(LabelTaskRow)).scalars():
            mine = [a for a in assignments if a.task_id == t.id]
            others = sum(a.annotator_id != aid and (a.status == "done" or (a.status == "leased"
                                                                           and a.lease_expires_at > now))
                         for a in mine)
            done_by_me = any(a.annotator_id == aid and a.status in ("done", "skipped") for a in mine)
            if others < t.required_annotations and not done_by_me and (t.query_id, t.candidate_id) not in graded:
                out.add(t.id)
    return out


def test_pending_and_hand_outs_follow_the_rules_read_row_by_row(store):
    q = _queue(store, overlap=0.5, overlap_annotators=2)
    store.submit_grade("cy", "n0", "n2", 1)  # graded outside the queue
    names = ["ana", "bob", "cy", "dee"]
    for step in range(24):
        name = names[step % 4]
        now = time.time()
        for who in names + ["nobody-yet"]:
            assert q.pending(who) == len(_open_by_hand(store, who, now)), (step, who)
        open_before = _open_by_hand(store, name, time.time())
        task = q.next_task(name)
        if task is None:
            assert not open_before
            continue
        assert task.id in open_before or task.annotator == name  # a new hand-out, or the lease it holds
        if step % 5 == 3:
            q.skip(name, task.id)
        elif step % 5 != 4:  # step % 5 == 4: keeps the lease without grading
            q.submit(name, task, step % 4)
    assert q.pending() >= 0


def test_a_task_needs_at_least_one_grade(store):
    from annotations.errors import AnnotationError
    from annotations.planning import PlannedTask

    q = LabelQueue(store, QueueConfig())
    bad = PlannedTask("n0", "n1", "boundary", 1.0, 0, Setting.parse(D64), 0)
    with pytest.raises(AnnotationError, match="at least one grade"):
        q.add_tasks([bad])
    assert store.counts()["label_tasks"] == 0
