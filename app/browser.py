"""Headless Chromium helpers that drive the app: the browser tests, scripts/screenshots.py and
scripts/bench_app.py share them.

Debian's ``/usr/bin/chromium`` driven by Playwright (never ``playwright install``), with the flags
that keep it offline and quiet. Knows only the app's element ids, nothing of its Python code.
"""

from __future__ import annotations

from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 1000}


@contextmanager
def chromium():
    """A launched headless Chromium browser, closed on exit."""
    from playwright.sync_api import sync_playwright  # a dev requirement (requirements-dev.txt), not served

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def login(browser, url: str, user: str, password: str, timeout_ms: int = 30_000,
          ready: str = "#explore-catalogue img"):
    """A new page signed in as ``user``, once ``ready`` (by default the Explore catalogue's photos)
    is on the page."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.fill("input[type=text]", user)
    page.fill("input[type=password]", password)
    page.keyboard.press("Enter")
    page.wait_for_selector(ready)
    return page


def captions(page, gallery: str) -> list[str]:
    """Caption texts of a gallery (CSS selector), in order."""
    return page.locator(f"{gallery} .caption-label").all_inner_texts()


def open_tab(page, name: str):
    page.get_by_role("tab", name=name).click()


def pick_dropdown(page, elem_id: str, value: str):
    """Choose ``value`` in the Gradio dropdown with ``elem_id``."""
    page.click(f"#{elem_id} input")
    page.locator(f"#{elem_id}").get_by_role("option", name=value, exact=True).click()


def wait_images_loaded(page, selector: str):
    """Wait until every <img> under ``selector`` exists and is decoded."""
    page.wait_for_function("(s) => { const g = [...document.querySelectorAll(s + ' img')];"
                           " return g.length > 0 && g.every(i => i.complete && i.naturalWidth > 0); }",
                           arg=selector)
