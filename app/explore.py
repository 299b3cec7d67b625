"""Explore: pick or upload a note, see its neighbours, compare two settings or two model versions,
grade in place, and send both compared lists to the label queue."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from app.auth import with_annotator
from app.views import (SCORE_SCALE, catalogue_line, error_box, gallery_items, note_card, ok_box,
                       result_line, short_id, waiting_box)
from uninote.embeddings import GRANULARITIES, QUERY_MODALITIES
from uninote.errors import UniNoteError
from uninote.service import STRATEGIES, UniNoteService, UploadedQuery

IMAGE_SUFFIXES = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"]
# One line per control, shown under its label (Gradio ``info=``).
HELP = {
    "k": "How many neighbours to show.",
    "modality": "Which part of the query searches: note = photos and text fused, image = photos only, "
                "text = title and body only.",
    "dim": "Embedding size searched (a Matryoshka prefix): smaller is faster and cheaper, full is the most precise.",
    "granularity": "Which vectors are compared: note (one fused vector per note), text, image (one per "
                   "photo) or region (one per photo crop).",
    "strategy": "exact: scan every note · adaptive: 64-d shortlist re-ranked at this dim · local: best "
                "photo or region match (note/text read the region index) · global+local: mean of note "
                "and region scores.",
    "compare": "Two searches of the same note: other settings, or another model version.",
    "version": "Model version of the right side, e.g. the SFT version against the RL version served now.",
}
UPLOAD_NOT_GRADED = ("Uploads are not in the annotation store, so their pairs cannot be graded: open a "
                     "catalogue note to grade.")


@dataclass
class ExploreHandles:
    """What other tabs need to open a note in Explore."""

    query: gr.State
    outputs: list
    settings: list
    open_note: object  # fn(note_id, *settings) -> [query] + outputs
    catalogue: gr.Gallery
    corpus_ids: gr.State
    find: gr.Textbox
    dim_a: gr.Dropdown
    dim_b: gr.Dropdown


def served_dims(service: UniNoteService) -> list[int]:
    """The dims the served version works at; none until the service is ready (then the app's
    status timer fills the dim dropdowns in)."""
    return service.dims() if service.ready else []


def _query_view(service: UniNoteService, query):
    """(photo, card html) for the current query: a corpus note id or an UploadedQuery."""
    if isinstance(query, UploadedQuery):
        photo = query.photos[0] if query.photos else None
        return photo, note_card(query.title or "Your upload", query.body, {"photos": len(query.photos)},
                                "uploaded note")
    note = service.note(query)
    return service.thumbnail(query), note_card(note.title, note.body, note.meta, note.note_id)


def _gradable(yes: bool, was: bool | None = None) -> tuple:
    """The four grade buttons: usable for a catalogue note, greyed out for an upload. When the
    previous query was of the same kind (``was == yes``) they are left as they are: a property
    update makes Gradio rebuild the component and its config, several ms per button per click."""
    if was is yes:
        return tuple(str(g) for g in range(4))  # their labels: a plain value, nothing rebuilt
    return tuple(gr.update(interactive=yes) for _ in range(4))


def _dim(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UniNoteError(f"dim must be a whole number (one the model serves), got {value!r}") from None


def _sides(k, modality, dim_a, gran_a, strat_a, dim_b, gran_b, strat_b, version_b) -> tuple[dict, dict]:
    """``neighbours`` settings of the left side (served version) and the right side."""
    left = dict(k=int(k), dim=_dim(dim_a), granularity=gran_a, modality=modality, strategy=strat_a)
    return left, dict(left, dim=_dim(dim_b), granularity=gran_b, strategy=strat_b, version=version_b or None)


def _empty(message: str = ""):
    return (None, "<div class='un-muted'>Pick a note from the catalogue, type an id, or upload photos.</div>",
            [], "", [], "", "", "", [],
            gr.update(choices=[], value=None, interactive=True), *_gradable(True), "", message)


def render(service: UniNoteService, query, k, modality, dim_a, gran_a, strat_a, compare, dim_b,
           gran_b, strat_b, version_b=None, previous=...):
    """Everything the Explore result area shows for one query and the chosen settings; a new
    query or setting clears the grade and page messages of the previous one.

    Outputs are plain values wherever the component's properties stay as they are (the gallery's
    columns follow the side-by-side switch in ``toggle_compare``; the right side's gallery and
    line sit in a column that switch shows or hides): Gradio rebuilds a component and its config
    for every ``gr.update``. ``previous`` is the query shown before (``...``: unknown), so the
    grade buttons are touched only when the query changes between an upload and a catalogue note."""
    if query is None:
        return _empty()
    try:
        left, right = _sides(k, modality, dim_a, gran_a, strat_a, dim_b, gran_b, strat_b, version_b)
        photo, card = _query_view(service, query)
        if compare:
            both = service.compare(query, left, right)
            a, b = both.left, both.right
            overlap = (f"**overlap@{int(k)} = {both.overlap:.2f}** · "
                       f"left {a.latency_ms:.1f} ms vs right {b.latency_ms:.1f} ms")
            gal_b, line_b = gallery_items(b.neighbours), result_line(b)
        else:
            a = service.neighbours(query, **left)
            overlap, gal_b, line_b = "", [], ""  # the right side is hidden
    except UniNoteError as exc:
        return _empty(error_box(str(exc)))
    shown = [n.note_id for n in a.neighbours if n.thumbnail]
    upload = isinstance(query, UploadedQuery)
    pairs = [] if upload else [(f"#{n.rank} {n.title[:60]}", f"{query}\t{n.note_id}") for n in a.neighbours]
    was = None if previous is ... else not isinstance(previous, UploadedQuery)  # None: the first query
    grade_note = f"<div class='un-muted'>{UPLOAD_NOT_GRADED}</div>" if upload else ""
    return (photo, card, gallery_items(a.neighbours), result_line(a), gal_b, line_b, overlap, "", shown,
            gr.update(choices=pairs, value=pairs[0][1] if pairs else None, interactive=not upload),
            *_gradable(not upload, was), grade_note, "")


def build(service: UniNoteService) -> ExploreHandles:
    dims = served_dims(service)
    query = gr.State(None)
    corpus_ids = gr.State([])
    shown = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            with gr.Tab("Catalogue"):
                find = gr.Textbox(placeholder="Search titles, ids, colours … (e.g. blue shirt)",
                                  show_label=False, elem_id="explore-find")
                find_info = gr.HTML(elem_id="explore-find-info")
                catalogue = gr.Gallery(columns=3, height=460, allow_preview=False, show_label=False,
                                       elem_id="explore-catalogue", object_fit="contain")
                with gr.Row():
                    by_id = gr.Textbox(placeholder="note id", show_label=False, scale=3,
                                       elem_id="explore-id")
                    open_btn = gr.Button("Open", scale=1, elem_id="explore-open")
            with gr.Tab("Upload"):
                files = gr.File(label="Photos (JPEG, PNG, WEBP, GIF, BMP; up to 4)",
                                file_count="multiple", file_types=IMAGE_SUFFIXES, type="filepath",
                                elem_id="explore-upload")
                up_title = gr.Textbox(label="Title (optional)", elem_id="upload-title")
                up_body = gr.Textbox(label="Body (optional)", lines=2)
                up_btn = gr.Button("Find neighbours", variant="primary", elem_id="upload-search")
            message = gr.HTML(elem_id="explore-message")
        with gr.Column(scale=5):
            with gr.Row(equal_height=True):
                q_photo = gr.Image(show_label=False, height=180, interactive=False,
                                   buttons=[], elem_id="query-photo", scale=0, min_width=180)
                q_card = gr.HTML(elem_id="query-card")
            with gr.Row():
                k = gr.Slider(4, 40, value=12, step=1, label="k", info=HELP["k"], scale=1)
                modality = gr.Radio(list(QUERY_MODALITIES), value="note", label="Query modality",
                                    info=HELP["modality"], scale=2)
                compare = gr.Checkbox(label="Side by side", value=False, elem_id="compare", scale=1,
                                      info=HELP["compare"])
            with gr.Row(equal_height=False):
                with gr.Column():
                    with gr.Row():
                        dim_a = gr.Dropdown(dims, value=dims[-1] if dims else None, label="Dim",
                                            info=HELP["dim"], elem_id="dim-a", min_width=90,
                                            allow_custom_value=True)  # API calls before the choices fill in
                        gran_a = gr.Dropdown(list(GRANULARITIES), value="note", label="Granularity",
                                             info=HELP["granularity"], elem_id="gran-a", min_width=110)
                        strat_a = gr.Dropdown(list(STRATEGIES), value="exact", label="Strategy",
                                              info=HELP["strategy"], elem_id="strat-a", min_width=120)
                    line_a = gr.Markdown(elem_id="result-line-a")
                    gal_a = gr.Gallery(columns=4, height="auto", allow_preview=False, show_label=False,
                                       elem_id="results-a", object_fit="contain")
                with gr.Column(visible=False) as right:
                    with gr.Row():
                        dim_b = gr.Dropdown(dims, value=dims[0] if dims else None, label="Dim (right)",
                                            info=HELP["dim"], elem_id="dim-b", min_width=90,
                                            allow_custom_value=True)
                        gran_b = gr.Dropdown(list(GRANULARITIES), value="note", label="Granularity",
                                             info=HELP["granularity"], min_width=110)
                        strat_b = gr.Dropdown(list(STRATEGIES), value="exact", label="Strategy",
                                              info=HELP["strategy"], min_width=120)
                    version_b = gr.Dropdown([], value=None, label="Model version (right)",
                                            info=HELP["version"], elem_id="version-b")
                    line_b = gr.Markdown(elem_id="result-line-b")
                    gal_b = gr.Gallery(columns=3, height="auto", allow_preview=False, show_label=False,
                                       elem_id="results-b", object_fit="contain")
            gr.Markdown(SCORE_SCALE, elem_classes=["un-muted"], elem_id="score-scale")
            with gr.Row(equal_height=True):
                overlap = gr.Markdown(elem_id="overlap")
                queue_btn = gr.Button("Send both lists to annotators", visible=False, scale=0,
                                      elem_id="queue-both")
            queue_msg = gr.HTML(elem_id="queue-message")
            with gr.Row(equal_height=True, elem_classes=["un-grade-row"]):
                pair = gr.Dropdown([], label="Grade a shown pair (query → neighbour)", scale=3,
                                   elem_id="explore-pair")
                grade_btns = [gr.Button(f"{g}", min_width=48, scale=0, elem_id=f"explore-grade-{g}")
                              for g in range(4)]
            grade_msg = gr.HTML(elem_id="explore-grade-message")

    settings = [k, modality, dim_a, gran_a, strat_a, compare, dim_b, gran_b, strat_b, version_b]
    outputs = [q_photo, q_card, gal_a, line_a, gal_b, line_b, overlap, queue_msg, shown, pair, *grade_btns,
               grade_msg, message]
    keep = tuple(gr.update() for _ in outputs[:-1])  # leaves the current query on screen

    def rerender(q, *s):
        return render(service, q, *s, previous=q)

    def open_note(note_id, *s, previous=...):
        note_id = (note_id or "").strip()
        if not service.ready:
            waiting = waiting_box(service, "Search opens when it is ready.")
            return (gr.update(),) + render(service, None, *s)[:-1] + (waiting,)
        if not note_id:
            return (gr.update(),) + keep + (error_box("Type a note id to open it"),)
        if note_id not in service.corpus:  # a typo keeps the current query on screen
            return (gr.update(),) + keep + (error_box(f"No note with id {short_id(note_id)}; "
                                                      "the notes shown are unchanged"),)
        return (note_id,) + render(service, note_id, *s, previous=previous)

    def search_catalogue(text):
        if not service.ready:  # the catalogue fills in when the service is ready (app/factory.py)
            return [], [], ""
        found = service.search_catalogue(text or "", limit=48)
        items = [(service.thumbnail(n.note_id), n.title) for n in found.notes]
        ids = [n.note_id for n, (t, _) in zip(found.notes, items) if t]
        items = [it for it in items if it[0]]
        return items, ids, catalogue_line(text or "", len(items), found.total)

    def pick(ids, previous, k_, modality_, dim_a_, gran_a_, strat_a_, compare_, dim_b_, gran_b_, strat_b_,
             version_b_, evt: gr.SelectData):
        return open_note(ids[evt.index], k_, modality_, dim_a_, gran_a_, strat_a_, compare_, dim_b_,
                         gran_b_, strat_b_, version_b_, previous=previous)

    def upload(paths, title, body, *s):
        paths = paths or []
        try:
            photos = [Path(p).read_bytes() for p in paths]
            up = service.encode_upload(photos, title or "", body or "", names=[Path(p).name for p in paths])
        except (UniNoteError, OSError) as exc:
            return (gr.update(),) + keep + (error_box(str(exc)),)
        return (up,) + render(service, up, *s)[:-1] + (ok_box(f"Upload accepted: {len(up.photos)} photo(s)"),)

    def toggle_compare(on, current):
        """Show the right side, offering every model version the store knows (served one first);
        side by side, each gallery gets half the width: 3 columns keep photos and captions readable."""
        columns = gr.update(columns=3 if on else 4)
        if not on or not service.ready:
            return gr.update(visible=on), gr.update(), gr.update(visible=on), columns
        served = service.served.version
        names = [served] + [v.version for v in service.versions() if v.version != served]
        value = current if current in names else served
        return gr.update(visible=True), gr.update(choices=names, value=value), gr.update(visible=True), columns

    def queue_both(q, k_, modality_, dim_a_, gran_a_, strat_a_, _compare, dim_b_, gran_b_, strat_b_, version_b_):
        if q is None:
            return error_box("Open a catalogue note first")
        try:
            left, right = _sides(k_, modality_, dim_a_, gran_a_, strat_a_, dim_b_, gran_b_, strat_b_, version_b_)
            sent = service.queue_comparison(q if isinstance(q, str) else None, left, right)
        except UniNoteError as exc:
            return error_box(str(exc))
        return ok_box(f"Sent {sent['pairs']} pairs (both lists) to the label queue: {sent['added']} new, "
                      f"{sent['existing']} already queued")

    def grade(g, who, pair_value):
        q, _, candidate = (pair_value or "").partition("\t")
        if not q or not candidate:
            return error_box("Open a catalogue note first: uploads are not in the annotation store")
        try:
            service.grade(who, q, candidate, g)
        except UniNoteError as exc:
            return error_box(str(exc))
        return ok_box(f"Saved grade {g} for {q} → {candidate}")

    found = [catalogue, corpus_ids, find_info]
    find.submit(search_catalogue, find, found, api_visibility="private", queue=False)
    find.change(search_catalogue, find, found, api_visibility="private", trigger_mode="always_last", queue=False)
    # A search answers in milliseconds: no progress overlay (it would flash on all 19 outputs).
    fast = dict(api_visibility="private", queue=False, show_progress="hidden")
    catalogue.select(pick, [corpus_ids, query] + settings, [query] + outputs, **fast)
    gal_a.select(pick, [shown, query] + settings, [query] + outputs, **fast)
    open_btn.click(open_note, [by_id] + settings, [query] + outputs, api_name="explore_note", queue=False)
    by_id.submit(open_note, [by_id] + settings, [query] + outputs, api_visibility="private", queue=False)
    up_btn.click(upload, [files, up_title, up_body] + settings, [query] + outputs, api_name="explore_upload")
    # Searches take milliseconds: they are answered directly, outside the queue (lower latency);
    # uploads (decoding + model encoding) stay queued under the app's concurrency limit.
    for control in settings:
        control.change(rerender, [query] + settings, outputs, trigger_mode="always_last", **fast)
    compare.change(toggle_compare, [compare, version_b], [right, version_b, queue_btn, gal_a],
                   api_visibility="private", queue=False)
    queue_btn.click(queue_both, [query] + settings, queue_msg, api_visibility="private", queue=False)
    for g, btn in enumerate(grade_btns):
        btn.click(with_annotator(functools.partial(grade, g), 1), pair, grade_msg, api_visibility="private",
                  queue=False)
    return ExploreHandles(query, outputs, settings, open_note, catalogue, corpus_ids, find, dim_a, dim_b)
