import json

import numpy as np
import pytest

from uninote.embeddings import NoteEmbeddings, l2_normalize
from uninote.eval import evaluate, markdown_table, resolve_dims
from uninote.eval.metrics import mrr_at_k, ndcg_at_k, r_cap_at_k


def _toy_embeddings(n=40, d=32, seed=0):
    rng = np.random.default_rng(seed)
    n_img = rng.integers(0, 3, size=n)  # some notes have no photo
    owner = np.repeat(np.arange(n), n_img)
    reg_owner = np.repeat(owner, 4)
    reg_image = np.concatenate([np.repeat(np.arange(c), 4) for c in n_img if c]) if owner.size else []
    return NoteEmbeddings(
        note_ids=[f"n{i}" for i in range(n)],
        note=l2_normalize(rng.normal(size=(n, d))), text=l2_normalize(rng.normal(size=(n, d))),
        image=l2_normalize(rng.normal(size=(len(owner), d))), image_owner=owner,
        region=l2_normalize(rng.normal(size=(len(reg_owner), d))), region_owner=reg_owner,
        region_image=np.asarray(reg_image, dtype=np.int64), model_version="toy")


def _toy_qrels(emb, seed=1):
    rng = np.random.default_rng(seed)
    return {q: {c: int(rng.integers(0, 4)) for c in rng.choice(emb.note_ids, 12, replace=False)}
            for q in emb.note_ids[:15]}


def _reference_ranking(emb, row, modality, granularity, k):
    """Plain-loop Chamfer max-sim, independent of uninote.index.scoring."""
    q = emb.query(row).vectors(modality, granularity)
    vecs, owner = emb.vectors(granularity)
    scores = {}
    for j in range(len(emb)):
        if j == row:
            continue
        mine = vecs[[j]] if owner is None else vecs[owner == j]
        if len(mine) == 0:
            continue
        scores[j] = np.mean([max(float(qv @ c) for c in mine) for qv in q])
    order = sorted(scores, key=lambda j: (-scores[j], j))[:k]
    return [emb.note_ids[j] for j in order]


@pytest.mark.parametrize("modality,granularity", [
    ("note", "note"), ("text", "text"), ("image", "note"), ("image", "image"),
    ("note", "region"), ("image", "region"), ("text", "region")])
def test_harness_matches_brute_force_reference(modality, granularity):
    emb, k = _toy_embeddings(), 5
    qrels = _toy_qrels(emb)
    rep = evaluate(emb, qrels, dims=[32], modalities=[modality], granularities=[granularity], k=k)
    ndcgs, rcaps, mrrs = [], [], []
    for q, grades in qrels.items():
        row = emb.row(q)
        if emb.query(row).vectors(modality, granularity) is None:
            continue
        grades = {c: g for c, g in grades.items() if c != q}
        ranked = _reference_ranking(emb, row, modality, granularity, k)
        nd = ndcg_at_k(ranked, grades, k)
        if nd is None:
            continue
        ndcgs.append(nd), rcaps.append(r_cap_at_k(ranked, grades, k)), mrrs.append(mrr_at_k(ranked, grades, k))
    (res,) = rep.results
    assert res["n_queries"] == len(ndcgs) > 0
    assert res["ndcg@10"] == pytest.approx(np.mean(ndcgs), abs=1e-6)
    assert res["r_cap@10"] == pytest.approx(np.mean(rcaps), abs=1e-6)
    assert res["mrr@10"] == pytest.approx(np.mean(mrrs), abs=1e-6)


def test_query_itself_is_never_retrieved():
    from uninote.eval.harness import _rankings

    emb = _toy_embeddings()
    rows = list(range(10))
    for granularity in ("note", "text", "image", "region"):
        ranked = _rankings(emb, rows, "note", granularity, k=len(emb))
        assert ranked and all(emb.note_ids[r] not in ids for r, ids in ranked.items())


def test_dims_truncate_and_full_dim_is_always_reported():
    emb = _toy_embeddings(d=32)
    assert resolve_dims([8, 16, 64], 32) == [8, 16, 32]
    rep = evaluate(emb, _toy_qrels(emb), dims=[8, 16], modalities=["note"], granularities=["note"])
    assert [r["dim"] for r in rep.results] == [8, 16, 32]
    # a perfectly informative embedding: truncating changes the numbers
    assert len({round(r["ndcg@10"], 6) for r in rep.results}) > 1


def test_markdown_table_has_one_row_per_setting():
    emb = _toy_embeddings()
    rep = evaluate(emb, _toy_qrels(emb), dims=[16, 32])
    table = markdown_table(rep.results)
    rows = [l for l in table.splitlines() if l.startswith("| ") and not l.startswith("| query")]
    assert len(rows) == len({(r["query_modality"], r["granularity"]) for r in rep.results})
    json.dumps(rep.results)  # serialisable as the CLI writes it


def test_unknown_granularity_is_rejected():
    emb = _toy_embeddings()
    with pytest.raises(ValueError, match="unknown granularity"):
        evaluate(emb, _toy_qrels(emb), granularities=["pixels"])


def test_float16_stored_embeddings_are_scored_in_float32(tmp_path):
    """A float16 store (memory-mapped) gives the results of its values read back as float32,
    at every dim, the full dim included (where no truncation converts them)."""
    emb = _toy_embeddings(n=60, d=32, seed=3)
    emb.save(tmp_path / "e", dtypes="float16")
    stored = NoteEmbeddings.load(tmp_path / "e")
    assert stored.note.dtype == np.float16
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    as_read = NoteEmbeddings(stored.note_ids, f32(stored.note), f32(stored.text), f32(stored.image),
                             stored.image_owner, f32(stored.region), stored.region_owner, stored.region_image,
                             stored.model_version)
    qrels = _toy_qrels(emb)
    got = evaluate(stored, qrels, dims=[8, 16, 32]).results
    want = evaluate(as_read, qrels, dims=[8, 16, 32]).results
    assert got == want and any(r["dim"] == 32 for r in got)
