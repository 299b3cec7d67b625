"""Explore for a product manager, in a real headless Chromium: catalogue search by words with a
count and a "no matches" message, a mistyped id that keeps the current query, two model versions
side by side with overlap@k, and both lists sent to the label queue."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import PASSWORD, add_version

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from _browser import CHROMIUM, captions, chromium, login, pick_dropdown  # noqa: E402

pytestmark = pytest.mark.browser
TIMEOUT = 30_000  # every wait is bounded: a missing element fails the test in 30 s
FIND = "#explore-find textarea, #explore-find input"
BY_ID = "#explore-id textarea, #explore-id input"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (run scripts/ensure_chromium.sh as root)")
    with chromium() as b:
        yield b


def test_catalogue_search_by_words_counts_and_says_no_matches(browser, live_app):
    url, service = live_app
    page = login(browser, url, "ann10", PASSWORD, TIMEOUT)
    page.fill(FIND, "shirt")
    total = service.search_catalogue("shirt").total
    page.wait_for_selector(f"#explore-find-info:has-text('{total} notes match')")
    assert all("shirt" in c.split() for c in captions(page, "#explore-catalogue"))
    page.fill(FIND, "hoe")  # inside "shoe": a substring, not a word
    page.wait_for_selector("#explore-find-info:has-text('No notes match')")
    page.wait_for_function("document.querySelectorAll('#explore-catalogue .thumbnail-item').length === 0")
    page.fill(FIND, "sho")  # the start of a word follows the typing
    page.wait_for_selector("#explore-catalogue .caption-label")
    assert all("shoe" in c.split() for c in captions(page, "#explore-catalogue"))

    page.fill(BY_ID, "n7")
    page.click("#explore-open")
    page.wait_for_selector("#query-card:has-text('n7')")
    page.wait_for_selector("#results-a .caption-label")
    before = captions(page, "#results-a")
    page.fill(BY_ID, "n7x" + "y" * 300)  # a typo, and a very long one
    page.click("#explore-open")
    error = page.wait_for_selector("#explore-message .un-error")
    assert "No note with id" in error.inner_text() and "unchanged" in error.inner_text()
    assert "n7" in page.inner_text("#query-card") and captions(page, "#results-a") == before
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 2  # the long id wraps, the page does not widen
    page.close()


def test_two_model_versions_side_by_side_and_both_lists_to_the_queue(browser, live_app):
    from annotations.models import LabelTaskRow

    url, service = live_app
    other = add_version(service, "rl-compared", seed=7)
    full = service.dims()[-1]
    page = login(browser, url, "ann11", PASSWORD, TIMEOUT)
    page.fill(BY_ID, "n0")
    page.click("#explore-open")
    page.wait_for_selector("#results-a .caption-label")
    page.check("#compare input")
    page.wait_for_selector("#results-b .caption-label")
    pick_dropdown(page, "dim-b", str(full))
    pick_dropdown(page, "version-b", other)
    page.wait_for_selector(f"#result-line-b:has-text('model {other}')")
    left = dict(k=12, dim=full, granularity="note", modality="note", strategy="exact")
    both = service.compare("n0", left, dict(left, version=other))
    page.wait_for_selector(f"#overlap:has-text('overlap@12 = {both.overlap:.2f}')")
    assert captions(page, "#results-b") == [f"#{n.rank} · {n.score:.3f} · {n.title}"
                                            for n in both.right.neighbours if n.thumbnail]
    assert service.served.version != other  # comparing never changes what is served

    page.click("#queue-both")
    union = {n.note_id for n in both.left.neighbours} | {n.note_id for n in both.right.neighbours}
    sent = page.wait_for_selector("#queue-message .un-ok").inner_text()
    assert f"Sent {len(union)} pairs" in sent
    with service.store.database.read() as session:
        queued = set(session.execute(select(LabelTaskRow.candidate_id)
                                     .where(LabelTaskRow.query_id == "n0")).scalars())
    assert union <= queued
    page.close()
