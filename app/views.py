"""Small pure formatters shared by the tabs: service values in, Gradio-ready values out."""

from __future__ import annotations

import html

from uninote.service import Neighbour, SearchResult

GRADE_NAMES = {0: "0 · irrelevant", 1: "1 · related", 2: "2 · relevant", 3: "3 · near-duplicate"}
SCORE_SCALE = ("Scores are cosine similarities, −1 to 1 (higher is closer), for every strategy: "
               "image and region indexes score a note by its best-matching photo or region (max-sim), "
               "and global+local by the mean of the global and local cosines.")
LONG_ID = 60  # characters of an id shown in a message before it is cut with "…"


def gallery_items(neighbours: list[Neighbour]) -> list[tuple[str, str]]:
    """(thumbnail, caption) pairs; notes without a photo are shown by caption only."""
    return [(n.thumbnail or "", f"#{n.rank} · {n.score:.3f} · {n.title}") for n in neighbours
            if n.thumbnail]


def searched_index(result: SearchResult) -> str:
    """The index a search actually read, in words: ``local`` asked for ``note`` reads regions."""
    s = result.settings
    indexes = result.indexes or (s["granularity"],)
    if s["strategy"] == "global+local" and len(indexes) == 2:
        return f"{indexes[0]} index + {indexes[1]} max-sim"
    if s["strategy"] == "local":
        asked = "" if indexes[0] == s["granularity"] else f" (local searches {indexes[0]}s)"
        return f"{indexes[0]} index, max-sim{asked}"
    return f"{indexes[0]} index"


def result_line(result: SearchResult) -> str:
    s = result.settings
    return (f"**{len(result.neighbours)} neighbours** · {s['dim']}-d · {searched_index(result)} · "
            f"{s['modality']} query · {s['strategy']} · **{result.latency_ms:.1f} ms** · "
            f"model {result.version}")


def short_id(note_id: str) -> str:
    """An id as a message quotes it: cut to ``LONG_ID`` characters, so a pasted paragraph fits."""
    note_id = str(note_id)
    return repr(note_id if len(note_id) <= LONG_ID else note_id[:LONG_ID] + "…")


def catalogue_line(text: str, shown: int, total: int) -> str:
    """Under the search box: how many notes match the typed words, or that none does."""
    if not text.strip():
        return ""
    if total == 0:
        return (f"<div class='un-muted' role='status'>No notes match {html.escape(short_id(text.strip()))}: "
                "the search looks for whole words (or their starts) in titles, ids, tags and details.</div>")
    more = f", showing the first {shown}" if shown < total else ""
    return f"<div class='un-muted' role='status'>{total:,} note{'s' * (total != 1)} match{more}</div>"


def note_card(title: str, body: str, meta: dict | None = None, note_id: str = "") -> str:
    """HTML card with a note's text and a few metadata fields (escaped)."""
    fields = "".join(f"<span class='un-chip'>{html.escape(str(k))}: {html.escape(str(v))}</span>"
                     for k, v in list((meta or {}).items())[:6] if v not in (None, ""))
    ident = f"<div class='un-id'>{html.escape(note_id)}</div>" if note_id else ""
    body_html = f"<p>{html.escape(body[:600])}</p>" if body else ""
    return (f"<div class='un-card'>{ident}<h3>{html.escape(title or '(untitled)')}</h3>"
            f"{body_html}<div class='un-chips'>{fields}</div></div>")


def error_box(message: str) -> str:
    return f"<div class='un-error' role='alert'>⚠ {html.escape(message)}</div>"


def ok_box(message: str) -> str:
    return f"<div class='un-ok'>{html.escape(message)}</div>"


def waiting_box(service, what: str) -> str:
    """What a tab waits for while the service starts: the build step, percent and time left."""
    if service.ready:
        return ""
    waiting = service.waiting_for()
    if waiting.startswith("The service could not start"):
        return error_box(waiting)
    return f"<div class='un-wait' role='status'>⏳ {html.escape(waiting)} {html.escape(what)}</div>"
