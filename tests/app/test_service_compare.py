"""Side by side in the service: two model versions (bounded: the served one plus one compared),
overlap@k, the union of both lists to the label queue, and the catalogue's word search."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from PIL import Image

from sqlalchemy import select

from annotations.models import LabelTaskRow
from conftest import add_version, tiny_service_config
from uninote.data.note import Note
from uninote.errors import UniNoteError
from uninote.service import UniNoteService


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    config = replace(tiny_service_config(tmp_path_factory.mktemp("compare")), label_queries=4)
    service = UniNoteService(config).start()  # a first fill of 4 queries leaves notes unplanned
    add_version(service, "rl-a", seed=7)
    add_version(service, "rl-b", seed=8)
    return service


def test_two_versions_side_by_side_with_overlap(svc):
    served = svc.served.version
    same = dict(k=12, dim=32)
    both = svc.compare("n0", dict(same), dict(same, version="rl-a"))
    assert (both.left.version, both.right.version) == (served, "rl-a")
    assert both.right.neighbours == svc.neighbours("n0", k=12, dim=32, version="rl-a").neighbours
    expected = len({n.note_id for n in both.left.neighbours} & {n.note_id for n in both.right.neighbours}) / 12
    assert both.overlap == expected < 1  # another seed ranks differently
    assert svc.compare("n0", dict(same), dict(same)).overlap == 1.0
    assert svc.served.version == served  # comparing never changes what is served


def test_at_most_one_compared_version_is_held(svc):
    svc.neighbours("n0", k=3, version="rl-a")
    assert svc._compared.version == "rl-a"
    held = svc._compared.get("rl-a")
    svc.neighbours("n0", k=3, version="rl-b")  # replaces rl-a: served + one compared, never three
    assert svc._compared.version == "rl-b" and svc._compared.get("rl-b") is not held
    svc.neighbours("n0", k=3, version=svc.served.version)  # the served one is not loaded again
    assert svc._compared.version == "rl-b"
    with pytest.raises(UniNoteError, match="unknown model version 'nope'"):
        svc.neighbours("n0", k=3, version="nope")


def test_an_upload_is_encoded_by_the_version_it_is_searched_with(svc):
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(buf, format="PNG")
    up = svc.encode_upload([buf.getvalue()], "red shirt")
    assert up.version == svc.served.version
    got = svc.neighbours(up, k=5, version="rl-a")
    other = svc._compared.get("rl-a")
    query = other.model.encode_query(Note(up.upload_id, up.title, images=up.photos), None)
    direct = other.retriever.search(query, k=5, exclude_self=False)
    assert [n.note_id for n in got.neighbours] == [h.note_id for h in direct]
    stale = other.retriever.search(up.embedding, k=5, exclude_self=False)  # the served model's vectors
    assert [h.note_id for h in stale] != [h.note_id for h in direct]


def test_union_of_both_lists_goes_to_the_label_queue(svc):
    query = next(i for i in (n.note_id for n in svc.corpus.notes) if i not in svc.queue.queries())  # no tasks yet
    left, right = dict(k=12, dim=32), dict(k=12, dim=32, version="rl-a")
    both = svc.compare(query, left, right)
    a, b = ({n.note_id for n in side.neighbours} for side in (both.left, both.right))
    report = svc.queue_comparison(query, left, right)
    assert report == {"pairs": len(a | b), "added": len(a | b), "existing": 0}
    assert svc.queue_comparison(query, left, right) == {"pairs": len(a | b), "added": 0, "existing": len(a | b)}
    with svc.store.database.read() as session:
        rows = session.execute(select(LabelTaskRow).where(LabelTaskRow.query_id == query)).scalars().all()
        got = {r.candidate_id: (r.source, r.model_version) for r in rows}
    assert set(got) == a | b and b - a and a - b
    for c in b - a:  # only the compared version finds it: a disagreement, planned under that version
        assert got[c] == ("disagreement", "rl-a")
    for c in a - b:
        assert got[c] == ("disagreement", svc.served.version)
    assert all(got[c][0] in ("agreed", "boundary") for c in a & b)
    with pytest.raises(UniNoteError, match="uploads are not in the annotation store"):
        svc.queue_comparison(None, left, right)


def test_catalogue_search_by_words_with_total(svc):
    found = svc.search_catalogue("blue")
    assert found.total == len(found.notes) > 0
    assert all("blue" in n.title.lower().split() for n in found.notes)
    assert svc.search_catalogue("bl").total >= found.total  # prefixes follow the typing
    none = svc.search_catalogue("xylophone")
    assert none.total == 0 and none.notes == []
    assert [n.note_id for n in svc.find_notes("blue", limit=2)] == [n.note_id for n in found.notes[:2]]
