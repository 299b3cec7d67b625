"""The annotator's workflow in a real headless Chromium: guidelines beside the buttons, a comment
saved with a grade, a double key press that grades once, a review that changes a grade, and an
adjudication of a disagreement, each checked in the store. Every wait is bounded (TIMEOUT)."""

from __future__ import annotations

import pytest

from app.browser import login as _login
from app.browser import open_tab, pick_dropdown
from conftest import PASSWORD

pytestmark = pytest.mark.browser

TIMEOUT = 30_000


def _annotate(browser, url, user):
    page = _login(browser, url, user, PASSWORD, TIMEOUT)
    open_tab(page, "Annotate")
    page.wait_for_selector(f"#annotate-progress:has-text('{user}')")
    page.wait_for_selector("#annotate-query-photo img")
    return page


def _grades_settle(service, user: str, page, timeout_s: float = 15.0) -> int:
    """The annotator's grade count once no request is in flight (it stopped changing for 1.5 s)."""
    import time

    deadline, last = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        n = len(service.store.judgments(annotator=user))
        if n == last:
            return n
        last = n
        page.wait_for_timeout(1500)
    return last


def test_guidelines_comment_and_a_double_key_press(browser, live_app):
    url, service = live_app
    user = "ann15"
    page = _annotate(browser, url, user)
    assert "near-duplicate" in page.inner_text("#annotate-guidelines")  # visible while grading
    first = service.queue.next_task(user)
    page.fill("#annotate-comment textarea", "same cut, other colour")
    page.keyboard.press("Escape")  # leaves the comment box so the keys grade again
    page.wait_for_timeout(500)
    page.keyboard.press("1")
    page.wait_for_selector("#annotate-message:has-text('with your comment')")
    [j] = service.store.judgments(annotator=user)
    assert (j.query_id, j.candidate_id, j.grade, j.comment) == (first.query_id, first.candidate_id, 1,
                                                               "same cut, other colour")
    assert page.input_value("#annotate-comment textarea") == ""  # cleared for the next pair

    page.wait_for_timeout(800)  # the annotator looks at the next pair, then presses 3 twice
    second = service.queue.next_task(user)
    page.locator("#annotate-progress").click()
    page.keyboard.press("3")
    page.keyboard.press("3")  # dropped by the page, or refused or a no-op on the server when busy
    page.wait_for_selector("#annotate-message:has-text('Saved 3')")
    assert _grades_settle(service, user, page) == 2
    graded = [(j.query_id, j.candidate_id, j.grade) for j in service.store.judgments(annotator=user)]
    assert graded[-1] == (second.query_id, second.candidate_id, 3) and len(graded) == 2

    page.wait_for_timeout(800)  # two key events in one go (a bouncing key): the page says it drops one
    page.evaluate("['3', '3'].forEach(k => document.body.dispatchEvent("
                  "new KeyboardEvent('keydown', {key: k, bubbles: true})))")
    page.wait_for_selector("#un-keyguard", state="attached")  # written, whether or not faded yet
    assert "Second key press ignored" in page.text_content("#un-keyguard")
    assert _grades_settle(service, user, page) == 3

    page.wait_for_timeout(800)  # a double click on a button: the server refuses what gets through
    page.dblclick("#grade-0")
    assert _grades_settle(service, user, page) == 4
    page.close()


def test_review_changes_a_grade_and_a_reviewer_adjudicates(browser, live_app):
    url, service = live_app
    user, other = "ann16", "ann17"
    service.grade(user, "n8", "n9", 0, {"comment": "different kind"})
    service.grade(other, "n8", "n9", 3)  # grades three apart: a disagreement
    service.grade(user, "n8", "n10", 1)
    page = _login(browser, url, user, PASSWORD, TIMEOUT)
    open_tab(page, "Review")
    page.wait_for_selector("#review-mine:has-text('n8 → n10')")
    assert "different kind" in page.inner_text("#review-mine")

    pick_dropdown(page, "review-pair", "n8 → n10")
    page.locator("#review-grade").get_by_label("2 · relevant").check()
    page.fill("#review-comment textarea", "on a second look, the same kind")
    page.click("#review-change")
    page.wait_for_selector("#review-message:has-text('Changed n8 → n10: 2')")
    [j] = service.store.judgments(annotator=user, query_id="n8", candidate_id="n10")
    assert (j.grade, j.comment, j.revision) == (2, "on a second look, the same kind", 2)

    page.wait_for_selector("#review-disputes:has-text('n8 → n9')")
    pick_dropdown(page, "review-disputed", "n8 → n9")
    page.locator("#review-final").get_by_label("1 · related").check()
    page.fill("#review-reason textarea", "a related accessory")
    page.click("#review-adjudicate")
    page.wait_for_selector("#review-message:has-text('Adjudicated n8 → n9')")
    assert service.store.adjudicated_grades()[("n8", "n9")] == 1

    open_tab(page, "Dashboard")
    head = page.wait_for_selector("#dashboard-head:has-text('α')")
    assert "Krippendorff" in head.inner_text() or "needs" in head.inner_text()
    page.close()
