"""Map: a UMAP of the corpus embeddings, coloured by a metadata field; click a point to explore it.

Layouts are computed once per (model version, dim, granularity) in a background thread and cached
in the version folder; while one is computing, a timer polls and the status line says so.
Hover thumbnails and click-to-open are wired in static/uninote.js (plotly events).
"""

from __future__ import annotations

from collections import Counter

import gradio as gr

from app import plots
from app.explore import served_dims
from app.limits import POLL
from uninote.embeddings import GRANULARITIES
from uninote.service import UniNoteService


def meta_fields(service: UniNoteService, limit: int = 400) -> list[str]:
    """Metadata keys that make good colours: present on most notes, few distinct values."""
    notes = service.corpus.notes[:limit] if service.corpus else []
    counts = Counter(k for n in notes for k in n.meta)
    good = [k for k, c in counts.items() if c >= 0.5 * max(1, len(notes))
            and 1 < len({str(n.meta.get(k)) for n in notes}) <= 60]
    return sorted(good) or ["(none)"]


def file_url(path: str | None) -> str:
    return f"/gradio_api/file={path}" if path else ""


def figure(service: UniNoteService, dim, granularity, field):
    """(figure, status, keep polling?) for the requested layout."""
    if not service.ready:
        waiting = f"{service.waiting_for()} The map opens when it is ready."
        return plots.empty("Waiting for the model version"), waiting, True
    dim = int(dim) if dim else None
    if service.umap_pending(dim, granularity) or not service.umap_cached(dim, granularity):
        service.precompute_umap(dim, granularity)
        return (plots.empty("Computing the layout …"),
                f"⏳ computing UMAP of {len(service.corpus):,} notes ({granularity}, {dim or 'full'}-d); "
                "this runs once per setting and is cached", True)
    note_ids, xy = service.umap(dim, granularity)
    notes = [service.note(i) for i in note_ids]
    colours = [n.meta.get(field, "") for n in notes]
    thumbs = [file_url(service.thumbnail_if_cached(i)) for i in note_ids]
    fig = plots.umap_scatter(xy, note_ids, [n.title for n in notes], colours, field, thumbs)
    return fig, f"{len(note_ids):,} notes · {granularity} · {dim or 'full'}-d · click a point to explore it", False


def build(service: UniNoteService):
    dims = served_dims(service)
    with gr.Row():
        dim = gr.Dropdown(dims, value=dims[-1] if dims else None, label="Dim", elem_id="map-dim")
        gran = gr.Dropdown(list(GRANULARITIES), value="note", label="Granularity", elem_id="map-granularity")
        field = gr.Dropdown(["(none)"], value="(none)", label="Colour by", elem_id="map-field")
        draw = gr.Button("Draw map", variant="primary", elem_id="map-draw")
    status = gr.Markdown(elem_id="map-status")
    plot = gr.Plot(elem_id="umap-plot", show_label=False)
    with gr.Row():
        picked = gr.Textbox(label="Selected note id", elem_id="map-picked", scale=3)
        open_btn = gr.Button("Open in Explore", elem_id="map-open", scale=1)
    timer = gr.Timer(2.0, active=False)

    def redraw(d, g, f):
        fig, text, pending = figure(service, d, g, f)
        return fig, text, gr.Timer(active=pending)

    draw.click(redraw, [dim, gran, field], [plot, status, timer], api_visibility="private")
    timer.tick(redraw, [dim, gran, field], [plot, status, timer], **POLL)
    field.change(redraw, [dim, gran, field], [plot, status, timer], api_visibility="private")
    return dict(dim=dim, field=field, picked=picked, open_btn=open_btn, redraw=redraw, plot=plot,
                status=status, timer=timer, gran=gran)
