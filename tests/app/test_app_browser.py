"""The app in a real headless Chromium (Debian's), driven by Playwright against the live server.

Explore for a product manager is covered too: catalogue search by words with a count and a
"no matches" message, a mistyped id that keeps the current query, two model versions side by side
with overlap@k, and both lists sent to the label queue. Every wait is bounded by ``TIMEOUT``.

Screenshots of every tab go to $UNINOTE_SCREENSHOTS_DIR (docs/screenshots when regenerating the
README images), else to the test's tmp folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from app.browser import captions, open_tab, pick_dropdown
from app.browser import login as _login
from conftest import PASSWORD, add_version

pytestmark = pytest.mark.browser

TIMEOUT = 30_000


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = Path(os.environ.get("UNINOTE_SCREENSHOTS_DIR") or tmp_path_factory.mktemp("screens"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def login(browser, url: str, user: str):
    return _login(browser, url, user, PASSWORD, TIMEOUT)


def test_pick_note_see_neighbours_change_dim_compare(browser, live_app, shots):
    url, service = live_app
    page = login(browser, url, "ann1")
    page.locator("#explore-catalogue .thumbnail-item").first.click()
    page.wait_for_selector("#results-a .caption-label")
    first = captions(page, "#results-a")
    assert len(first) >= 4 and first[0].startswith("#1 · ")
    assert "n0" in page.inner_text("#query-card")
    expected = service.neighbours("n0", k=12, dim=64)
    assert first[0].endswith(expected.neighbours[0].title)
    page.screenshot(path=str(shots / "explore.png"), full_page=True)

    small = service.dims()[0]
    pick_dropdown(page, "dim-a", str(small))
    page.wait_for_function("(old) => { const c = [...document.querySelectorAll('#results-a .caption-label')]"
                           ".map(e => e.innerText); return c.length && c.join('|') !== old; }",
                           arg="|".join(first))
    after = captions(page, "#results-a")
    assert after != first
    assert f"{small}-d" in page.inner_text("#result-line-a")

    page.check("#compare input")
    page.wait_for_selector("#results-b .caption-label")
    assert "overlap@12" in page.inner_text("#overlap")
    page.screenshot(path=str(shots / "explore-compare.png"), full_page=True)

    # clicking a neighbour opens it as the new query
    target = service.neighbours("n0", k=12, dim=small).neighbours[0].note_id
    page.locator("#results-a .thumbnail-item").first.click()
    page.wait_for_function(f"document.querySelector('#query-card').innerText.includes('{target}')")
    page.close()


def test_catalogue_search_and_open_by_id(browser, live_app):
    url, service = live_app
    page = login(browser, url, "ann9")
    page.fill("#explore-find textarea, #explore-find input", "blue watch")
    page.wait_for_function("[...document.querySelectorAll('#explore-catalogue .caption-label')]"
                           ".every(e => e.innerText.includes('blue watch'))")
    expected = [n.title for n in service.find_notes("blue watch")]
    assert captions(page, "#explore-catalogue") == expected and expected
    page.fill("#explore-id textarea, #explore-id input", "n7")
    page.click("#explore-open")
    page.wait_for_selector("#query-card:has-text('n7')")
    page.wait_for_selector("#results-a .caption-label")
    page.fill("#explore-id textarea, #explore-id input", "no-such-note")
    page.click("#explore-open")
    assert "No note with id" in page.wait_for_selector("#explore-message .un-error").inner_text()
    page.close()


def test_grade_with_keyboard_shortcut_lands_in_database(browser, live_app, shots):
    url, service = live_app
    page = login(browser, url, "ann2")
    page.locator("#explore-catalogue .thumbnail-item").first.click()  # Explore first, then the tab
    page.wait_for_selector("#results-a .caption-label")
    open_tab(page, "Annotate")
    page.wait_for_selector("#annotate-query-photo img")
    page.wait_for_selector("#annotate-progress:has-text('ann2')")
    page.wait_for_timeout(1000)  # the pair's photos are shown, not left under a loading overlay
    assert page.locator("#tab-annotate .eta-bar").count() == 0
    task = service.queue.next_task("ann2")  # the pair leased to ann2 is the one on screen
    page.screenshot(path=str(shots / "annotate.png"), full_page=True)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("2")
    page.wait_for_selector("#annotate-message:has-text('Saved')")
    rows = service.store.judgments(annotator="ann2")
    assert [(j.query_id, j.candidate_id, j.grade) for j in rows] == [(task.query_id, task.candidate_id, 2)]
    page.keyboard.press("u")
    page.wait_for_selector("#annotate-message:has-text('Undone')")
    assert service.store.judgments(annotator="ann2") == []
    page.close()


def test_upload_photo_gets_neighbours(browser, live_app, tmp_path):
    url, service = live_app
    page = login(browser, url, "ann3")
    photo = tmp_path / "mine.png"
    shutil.copy(Path(service.corpus.root) / "images" / "0_0.png", photo)
    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#explore-upload input[type=file]", str(photo))
    page.fill("#upload-title textarea, #upload-title input", "my red shirt")
    page.wait_for_timeout(500)
    page.click("#upload-search")
    page.wait_for_selector("#explore-message:has-text('Upload accepted')")
    page.wait_for_selector("#results-a .caption-label")
    assert len(captions(page, "#results-a")) >= 4
    # an upload is not in the annotation store: its pairs are not offered for grading
    page.wait_for_selector("#explore-grade-message:has-text('Uploads are not in the annotation store')")
    assert page.is_disabled("#explore-grade-0")
    # a neighbour of the upload is a catalogue note: its pairs can be graded again
    card = page.inner_text("#query-card .un-card")
    page.locator("#results-a .thumbnail-item").first.click()
    page.wait_for_function("(old) => document.querySelector('#query-card .un-card').innerText !== old", arg=card)
    page.wait_for_function("() => !document.querySelector('#explore-grade-0').disabled")
    assert page.inner_text("#explore-grade-message") == ""
    # and a setting changed on a catalogue note leaves them usable
    small = service.dims()[0]
    pick_dropdown(page, "dim-a", str(small))
    page.wait_for_selector(f"#result-line-a:has-text('{small}-d')")
    assert not page.is_disabled("#explore-grade-0") and not page.is_disabled("#explore-grade-3")
    page.close()


def test_upload_broken_file_shows_error_and_stores_nothing(browser, live_app, tmp_path):
    url, service = live_app
    page = login(browser, url, "ann4")
    good = (Path(service.corpus.root) / "images" / "1_0.png").read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(good[: len(good) // 2])  # truncated PNG
    before = sorted(service.config.uploads_dir.rglob("*"))
    page.get_by_role("tab", name="Upload").click()
    page.set_input_files("#explore-upload input[type=file]", str(broken))
    page.wait_for_timeout(500)
    page.click("#upload-search")
    error = page.wait_for_selector("#explore-message .un-error")
    assert "truncated PNG" in error.inner_text() and "broken.png" in error.inner_text()  # names the file
    assert sorted(service.config.uploads_dir.rglob("*")) == before
    page.close()


def test_other_tabs_render(browser, live_app, shots):
    url, service = live_app
    page = login(browser, url, "ann5")
    open_tab(page, "Map")
    page.click("#map-draw")
    page.wait_for_selector("#umap-plot .js-plotly-plot", timeout=120_000)
    page.wait_for_selector("#map-status:has-text('click a point')", timeout=120_000)
    page.screenshot(path=str(shots / "map.png"), full_page=True)
    # plotly events as a mouse would fire them: hover shows the thumbnail, click opens Explore
    thumb = service.thumbnail("n5")
    page.evaluate("(t) => document.querySelector('#umap-plot .js-plotly-plot').emit('plotly_hover',"
                  " {points: [{customdata: ['n5', '/gradio_api/file=' + t], text: 'x'}], event: {clientX: 50, clientY: 50}})",
                  thumb)
    assert page.wait_for_selector(".un-tip img").get_attribute("src").endswith(thumb)
    page.evaluate("document.querySelector('#umap-plot .js-plotly-plot').emit('plotly_click',"
                  " {points: [{customdata: ['n5', '']}]})")
    page.wait_for_function("document.querySelector('#query-card') &&"
                           " document.querySelector('#query-card').innerText.includes('n5')")
    page.wait_for_selector("#results-a .caption-label")
    rng = __import__("random").Random(0)
    for user in ("ann6", "ann7", "ann8"):  # a few grades, some pairs by several people
        for q in range(6):
            service.grade(user, f"n{q}", f"n{q + 12}", rng.choice([2, 3, 3]))
            service.grade(user, f"n{q}", f"n{q + 1}", rng.choice([0, 1]))
    open_tab(page, "Dashboard")
    head = page.wait_for_selector("#dashboard-head:has-text('judgments')")
    assert not head.inner_text().startswith("0 judgments") and "exact agreement" in head.inner_text()
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    open_tab(page, "Trainer")
    page.wait_for_selector("#trainer-versions:has-text('active')")
    # the version picker shows what is being served, not an empty box
    page.wait_for_function("v => document.querySelector('#trainer-version input').value === v",
                           arg=service.served.version)
    page.screenshot(path=str(shots / "trainer.png"), full_page=True)
    page.close()


FIND = "#explore-find textarea, #explore-find input"
BY_ID = "#explore-id textarea, #explore-id input"


def test_catalogue_search_by_words_counts_and_says_no_matches(browser, live_app):
    url, service = live_app
    page = login(browser, url, "ann10")
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
    page = login(browser, url, "ann11")
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
