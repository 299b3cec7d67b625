"""README screenshots of a running UniNote app: one PNG per tab, from headless Chromium.

Start the app on the real catalogue with logins first, then point this script at it:

    UNINOTE_USERS="alice:pw,bob:pw" .venv/bin/python app.py &      # GRADIO_SERVER_PORT=7860
    .venv/bin/python scripts/screenshots.py http://127.0.0.1:7860 --user alice --password pw

Writes explore.png, explore-compare.png, annotate.png, review.png, map.png, dashboard.png and
trainer.png (1400-px-wide viewport, full page) to --out (default docs/screenshots); --tabs takes
only some of them (e.g. --tabs review). review.png shows --user's own grades and the store's
disagreements, so sign in as someone who has graded. A PNG larger than
--max-kb is re-encoded with a 256-colour palette, then shrunk, until it fits.
Opening the Annotate tab leases one pair to --user in the app's annotation store; nothing is graded.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from app.browser import chromium, login, open_tab, pick_dropdown, wait_images_loaded

REPO = Path(__file__).resolve().parents[1]
TABS = ("explore", "annotate", "review", "map", "dashboard", "trainer")  # in the order they are shot


def open_note(page, note_id: str):
    """Open a catalogue note by id and wait until its neighbours' photos are on screen."""
    page.fill("#explore-id textarea, #explore-id input", note_id)
    page.click("#explore-open")
    page.wait_for_selector(f"#query-card:has-text('{note_id}')")
    page.wait_for_selector("#results-a .caption-label")
    wait_images_loaded(page, "#results-a")
    wait_images_loaded(page, "#query-photo")


def explore(page, out: Path, note_id: str, compare_id: str, dims: tuple[str, str]):
    """Explore with one setting, then side by side (dims[0] left vs dims[1] right)."""
    open_note(page, note_id)
    page.screenshot(path=str(out / "explore.png"), full_page=True)
    open_note(page, compare_id)
    page.check("#compare input")
    page.wait_for_selector("#results-b .caption-label")
    pick_dropdown(page, "dim-a", dims[0])
    pick_dropdown(page, "dim-b", dims[1])
    for dim in dims:
        page.wait_for_selector(f"#tab-explore :text('{dim}-d · ')")
    page.wait_for_selector("#overlap:has-text('overlap@')")
    page.click("#explore-open")  # once more, warm: the first search at a new dim pays one-off costs
    page.wait_for_timeout(1500)
    wait_images_loaded(page, "#results-a")
    wait_images_loaded(page, "#results-b")
    page.mouse.move(5, 5)
    page.screenshot(path=str(out / "explore-compare.png"), full_page=True)


def annotate(page, out: Path, user: str):
    open_tab(page, "Annotate")
    page.wait_for_selector(f"#annotate-progress:has-text('{user}')")
    page.wait_for_selector("#tab-annotate .un-card h3")
    page.wait_for_timeout(1000)
    page.wait_for_function(IDLE)
    wait_images_loaded(page, "#annotate-query-photo")
    wait_images_loaded(page, "#annotate-candidate-photo")
    page.screenshot(path=str(out / "annotate.png"), full_page=True)


# No Gradio component of the visible tab shows its loading overlay.
IDLE = "() => ![...document.querySelectorAll('.wrap.pending, .eta-bar')].some(e => e.offsetParent !== null)"

# Screen position of one map marker (a note of the largest trace, a third into it): plotly's axes
# turn data into pixels; scattergl draws on a canvas, so there is no element to hover.
POINT_ON_SCREEN = """() => {
  const gd = document.querySelector('#umap-plot .js-plotly-plot');
  const trace = gd && gd._fullData && gd._fullData[0];
  if (!trace || !trace.x.length) return null;
  const i = Math.floor(trace.x.length / 3), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
  const r = gd.getBoundingClientRect();
  return [r.left + xa._offset + xa.d2p(trace.x[i]), r.top + ya._offset + ya.d2p(trace.y[i])];
}"""


def review(page, out: Path):
    """The signed-in annotator's own grades, and the pairs annotators disagree on."""
    open_tab(page, "Review")
    page.wait_for_selector("#review-mine table tbody tr")
    page.wait_for_timeout(1000)
    page.wait_for_function(IDLE)
    page.screenshot(path=str(out / "review.png"), full_page=True)


def map_tab(page, out: Path, field: str):
    """UMAP coloured by ``field``, with the hover card of one point shown."""
    open_tab(page, "Map")
    pick_dropdown(page, "map-field", field)
    page.click("#map-draw")
    page.wait_for_selector("#map-status:has-text('click a point')", timeout=600_000)
    page.wait_for_selector("#umap-plot .js-plotly-plot .main-svg")
    page.wait_for_timeout(1500)  # plotly (WebGL) finishes its first draw
    spot = page.evaluate(POINT_ON_SCREEN)
    if spot:  # a real mouse hover: plotly shows its label and static/uninote.js the thumbnail card
        page.mouse.move(spot[0], spot[1])
        page.wait_for_timeout(1500)
    page.screenshot(path=str(out / "map.png"), full_page=True)
    page.mouse.move(5, 5)


def dashboard(page, out: Path):
    open_tab(page, "Dashboard")
    page.wait_for_selector("#dashboard-head:has-text('judgments')", timeout=120_000)
    page.wait_for_selector("#dashboard-quality .js-plotly-plot", timeout=120_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out / "dashboard.png"), full_page=True)


def trainer(page, out: Path):
    open_tab(page, "Trainer")
    page.wait_for_selector("#trainer-versions:has-text('active')")
    page.wait_for_timeout(500)
    page.screenshot(path=str(out / "trainer.png"), full_page=True)


def fit_size(path: Path, max_kb: int) -> str:
    """Re-encode ``path`` (palette, then smaller) until it is at most ``max_kb``; returns what was done."""
    from PIL import Image

    if path.stat().st_size <= max_kb * 1024:
        return "as shot"
    image = Image.open(path).convert("RGB")
    scale = 1.0
    while True:
        w, h = int(image.width * scale), int(image.height * scale)
        small = image if scale == 1.0 else image.resize((w, h), Image.LANCZOS)
        buf = io.BytesIO()
        small.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, "PNG", optimize=True)
        if buf.tell() <= max_kb * 1024 or scale < 0.5:
            path.write_bytes(buf.getvalue())
            return f"256 colours, {w}x{h}"
        scale *= 0.85


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="the running app, e.g. http://127.0.0.1:7860")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="output folder")
    ap.add_argument("--user", default="alice", help="a login of the app (UNINOTE_USERS)")
    ap.add_argument("--password", default="pw", help="that login's password")
    ap.add_argument("--note", default="10130", help="query note id for explore.png")
    ap.add_argument("--compare-note", default="10187", help="query note id for explore-compare.png")
    ap.add_argument("--dims", nargs=2, default=["768", "64"], help="left and right dim for the side by side")
    ap.add_argument("--map-field", default="articleType", help="metadata field that colours the map")
    ap.add_argument("--max-kb", type=int, default=400, help="largest PNG size to keep")
    ap.add_argument("--timeout", type=int, default=60, help="seconds to wait for each step")
    ap.add_argument("--tabs", nargs="+", choices=TABS, default=list(TABS), help="which tabs to shoot")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shots = {"explore": lambda p: explore(p, args.out, args.note, args.compare_note, tuple(args.dims)),
             "annotate": lambda p: annotate(p, args.out, args.user), "review": lambda p: review(p, args.out),
             "map": lambda p: map_tab(p, args.out, args.map_field), "dashboard": lambda p: dashboard(p, args.out),
             "trainer": lambda p: trainer(p, args.out)}
    with chromium() as browser:
        page = login(browser, args.url, args.user, args.password, args.timeout * 1000)
        for tab in args.tabs:
            shots[tab](page)
    for tab in args.tabs:
        for name in ([tab, "explore-compare"] if tab == "explore" else [tab]):
            path = args.out / f"{name}.png"
            how = fit_size(path, args.max_kb)
            print(f"{path}  {path.stat().st_size // 1024} KB  ({how})")


if __name__ == "__main__":
    main()
