"""Small pure formatters shared by the tabs: service values in, Gradio-ready values out."""

from __future__ import annotations

import html

from uninote.service import Neighbour, SearchResult

GRADE_NAMES = {0: "0 · irrelevant", 1: "1 · related", 2: "2 · relevant", 3: "3 · near-duplicate"}


def gallery_items(neighbours: list[Neighbour]) -> list[tuple[str, str]]:
    """(thumbnail, caption) pairs; notes without a photo are shown by caption only."""
    return [(n.thumbnail or "", f"#{n.rank} · {n.score:.3f} · {n.title}") for n in neighbours
            if n.thumbnail]


def result_line(result: SearchResult) -> str:
    s = result.settings
    return (f"**{len(result.neighbours)} neighbours** · {s['dim']}-d · {s['granularity']} index · "
            f"{s['modality']} query · {s['strategy']} · **{result.latency_ms:.1f} ms** · "
            f"model {result.version}")


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
