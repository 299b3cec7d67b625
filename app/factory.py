"""The Gradio app: one ``gr.Blocks`` built from one ``UniNoteService``, and how to launch it safely.

``build_demo(service)`` lays out the tabs; ``launch_settings(service)`` returns the hardened
``launch()`` keyword arguments: login, served paths limited to the thumbnail and upload folders,
an upload size cap, no flagging, the static CSS/JS, and the bounds on what Gradio keeps between
requests (``app/limits.py``). Queue limits are set in ``build_demo``.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from app import annotate, api, dashboard, explore, map_tab, review, trainer
from app.auth import LoginRequired, load_users, make_auth, on_spaces
from app.limits import POLL, delete_cache_setting, max_sessions, start_trimming
from app.views import waiting_box
from uninote.service import UniNoteService

STATIC = Path(__file__).resolve().parents[1] / "static"
CONCURRENCY = int(os.environ.get("UNINOTE_CONCURRENCY", "4"))  # CPU-bound searches at once
QUEUE_SIZE = int(os.environ.get("UNINOTE_QUEUE_SIZE", "64"))  # waiting requests before "busy"
MAX_UPLOAD = os.environ.get("UNINOTE_MAX_UPLOAD", "10mb")


def build_demo(service: UniNoteService) -> gr.Blocks:
    with gr.Blocks(title="UniNote", analytics_enabled=False, fill_width=True,
                   delete_cache=delete_cache_setting()) as demo:
        with gr.Row(elem_classes=["un-header"]):
            gr.Markdown("## UniNote · note-to-note retrieval", elem_classes=["un-brand"])
            status = gr.Markdown(service.status, elem_id="service-status", elem_classes=["un-status"])
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Explore", id="explore", elem_id="tab-explore"):
                ex = explore.build(service)
            with gr.Tab("Annotate", id="annotate", elem_id="tab-annotate") as ann_tab:
                ann_outputs, ann_load = annotate.build(service)
            with gr.Tab("Review", id="review", elem_id="tab-review") as review_tab:
                review_outputs, review_load = review.build(service)
            with gr.Tab("Map", id="map", elem_id="tab-map"):
                mp = map_tab.build(service)
            with gr.Tab("Dashboard", id="dashboard", elem_id="tab-dashboard") as dash_tab:
                dash_run, dash_inputs, dash_outputs = dashboard.build(service)
            with gr.Tab("Trainer", id="trainer", elem_id="tab-trainer"):
                poll, poll_outputs = trainer.build(service)

        # Cold start: the page is up at once; every tab says what it waits for (the build's step,
        # percent and time left) until the service is ready, then the controls pick up the served
        # model's dims, the catalogue and the dashboard fill in, without a reload.
        status_timer = gr.Timer(1.0)
        seen = gr.State("")  # "" first tick, "waiting" while the page saw the build, then "ready"
        explore_message, dash_head = ex.outputs[-1], dash_outputs[0]
        waiting = {explore_message: "Search opens when it is ready.",
                   mp["status"]: "The map opens when it is ready.",
                   dash_head: "The dashboard fills in when it is ready."}
        strat_a = ex.settings[4]
        ready_outputs = [ex.dim_a, ex.dim_b, strat_a, mp["dim"], mp["field"], ex.catalogue, ex.corpus_ids,
                         explore_message, mp["status"]] + dash_outputs

        def on_status(seen_before, *dash_settings):
            if seen_before == "ready":  # ticks on while the rest of a big corpus is being added
                return {status: service.status, status_timer: gr.Timer(active=service.completing)}
            if not service.ready:
                return {status: service.status, seen: "waiting",
                        **{box: waiting_box(service, what) for box, what in waiting.items()}}
            dims = service.dims()
            items, ids = _catalogue(service, "")
            fields = map_tab.meta_fields(service)
            out = {status: service.status, seen: "ready", status_timer: gr.Timer(active=service.completing),
                   ex.dim_a: gr.update(choices=dims, value=dims[-1]),
                   ex.dim_b: gr.update(choices=dims, value=dims[0]),
                   strat_a: gr.update(value=service.default_strategy()),
                   mp["dim"]: gr.update(choices=dims, value=dims[-1]),
                   mp["field"]: gr.update(choices=fields, value=fields[0]), ex.catalogue: items,
                   ex.corpus_ids: ids}
            if seen_before == "waiting":  # the tabs were showing the waiting line: clear it, fill in
                out.update({explore_message: "", mp["status"]: ""})
                out.update(zip(dash_outputs, dash_run(*dash_settings)))
            return out

        status_timer.tick(on_status, [seen] + dash_inputs, [status, seen, status_timer] + ready_outputs,
                          **POLL)
        demo.load(ann_load, None, ann_outputs, api_visibility="private")
        # Opening the tab shows the pair again (the same leased one): the photos of a tab first
        # opened after other events otherwise stay under Gradio's loading overlay.
        ann_tab.select(ann_load, None, ann_outputs, api_visibility="private", queue=False)
        dash_tab.select(dash_run, dash_inputs, dash_outputs, api_visibility="private")
        review_tab.select(review_load, None, review_outputs, api_visibility="private")

        def open_from_map(note_id, *settings):
            return (gr.Tabs(selected="explore"),) + tuple(ex.open_note(note_id, *settings))

        mp["open_btn"].click(open_from_map, [mp["picked"]] + ex.settings,
                             [tabs, ex.query] + ex.outputs, api_visibility="private")
        api.register(service)  # endpoints for programs: typed parameters, JSON results
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    start_trimming(demo)  # Gradio's per-event analytics and closed pages' sessions, bounded (app/limits.py)
    return demo


def _catalogue(service: UniNoteService, text: str):
    notes = service.find_notes(text, limit=48)
    pairs = [(service.thumbnail(n.note_id), n.title, n.note_id) for n in notes]
    pairs = [p for p in pairs if p[0]]
    return [(t, title) for t, title, _ in pairs], [i for _, _, i in pairs]


def launch_settings(service: UniNoteService) -> dict:
    """Hardened keyword arguments for ``demo.launch``."""
    cfg = service.config
    for d in (cfg.thumbs_dir, cfg.uploads_dir):
        d.mkdir(parents=True, exist_ok=True)
    users = load_users()
    gr.set_static_paths([cfg.thumbs_dir])  # served from thumbs/ as they are: no copy per gallery
    settings = dict(
        allowed_paths=[str(cfg.thumbs_dir), str(cfg.uploads_dir)],
        blocked_paths=[str(cfg.versions_root), str(Path(cfg.home) / "annotations.db")],
        max_file_size=MAX_UPLOAD,
        show_error=False,
        footer_links=["api"],
        css_paths=[STATIC / "uninote.css"],
        head=f"<script>{(STATIC / 'uninote.js').read_text()}</script>",
        theme=gr.themes.Soft(primary_hue="blue", neutral_hue="slate"),
        ssr_mode=False,
        state_session_capacity=max_sessions(),
    )
    if users and not on_spaces():
        settings["auth"] = make_auth(users)
        settings["auth_message"] = "UniNote: sign in to explore and annotate."
        settings["app_kwargs"] = {"middleware": [Middleware(LoginRequired)]}
    return settings
