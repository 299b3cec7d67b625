"""Trainer: queue an RL run from the collected grades, watch it, and switch the served version.

The RL worker (``uninote worker``) claims jobs from the annotation store and registers the new
version folder when done. The app runs one itself (``UNINOTE_WORKER=0`` turns it off, for
deployments that run workers elsewhere: the tab then gives the command). This tab only reads and
writes the store through the service. Switching versions loads the new folder first and then swaps
one reference, so searches in flight finish on the version they started with and no restart is
needed.
"""

from __future__ import annotations

import os

import gradio as gr
import pandas as pd

from app.auth import with_annotator
from app.dashboard import versions_table
from app.limits import POLL
from app.views import error_box, ok_box, waiting_box
from uninote.errors import UniNoteError
from uninote.service import UniNoteService
from uninote.train.rl_config import RLConfig


def jobs_table(service: UniNoteService) -> pd.DataFrame:
    rows = [{"job": j.id, "kind": j.kind, "status": j.status, "progress": f"{j.progress:.0%}",
             "message": j.error or j.message or "", "from": j.params.get("base_version", ""),
             "result": (j.result or {}).get("version", "")} for j in service.jobs()]
    return pd.DataFrame(rows, columns=["job", "kind", "status", "progress", "message", "from", "result"])


def worker_line(service: UniNoteService) -> str:
    """Who trains the queued runs: the app's own worker, or the command to start one elsewhere."""
    if not service.ready:
        return waiting_box(service, "Training opens when it is ready.")
    hint = f"`{service.worker_hint()}`"
    if service.worker is not None:
        return (f"Queued runs are trained by the app's own trainer worker ({service.worker.describe()}). "
                f"To train elsewhere, start the app with `UNINOTE_WORKER=0` and run {hint}")
    return f"No trainer worker runs in this app (`UNINOTE_WORKER=0`): start one with {hint}"


def _refuse(who: str | None) -> str | None:
    """Trainer actions need a signed-in user, and one of $UNINOTE_ADMINS when that is set."""
    if not who:
        return error_box("Sign in to start runs or switch versions")
    admins = {a.strip() for a in os.environ.get("UNINOTE_ADMINS", "").split(",") if a.strip()}
    if admins and who not in admins:
        return error_box(f"{who} may not start runs or switch versions (UNINOTE_ADMINS)")
    return None


def build(service: UniNoteService):
    gr.Markdown("Queue an RL run that learns from the grades collected so far. A trainer worker "
                "picks it up; when it finishes, its version appears below and can be served without "
                "a restart.")
    worker = gr.Markdown(worker_line(service), elem_id="trainer-worker")
    defaults = RLConfig()  # the recommended settings, not numbers copied into the UI
    with gr.Row():
        steps = gr.Number(value=defaults.steps, precision=0, label="RL steps", minimum=1, maximum=100000,
                          elem_id="trainer-steps")
        lr = gr.Number(value=defaults.learning_rate, label="Learning rate", minimum=0)
        enqueue = gr.Button("Start RL run", variant="primary", elem_id="trainer-enqueue")
    message = gr.HTML(elem_id="trainer-message")
    jobs = gr.Dataframe(interactive=False, elem_id="trainer-jobs", label="Jobs (refreshes every 2 s)")
    gr.Markdown("#### Versions")
    versions = gr.Dataframe(interactive=False, elem_id="trainer-versions")
    with gr.Row():
        pick = gr.Dropdown([], label="Serve version", elem_id="trainer-version", scale=3,
                           allow_custom_value=True)
        activate = gr.Button("Switch", elem_id="trainer-activate", scale=1)
    timer = gr.Timer(2.0)

    def poll(current=None):
        if not service.ready:
            return pd.DataFrame(), pd.DataFrame(), gr.update(), worker_line(service)
        names = [v.version for v in service.versions()]
        # an empty picker shows the version being served rather than nothing; a picked value is
        # left alone (a tick in flight while the user picks must not put the old value back)
        pick_update = gr.update(choices=names) if current else \
            gr.update(choices=names, value=service.served.version)
        return jobs_table(service), versions_table(service), pick_update, worker_line(service)

    def start(who, values):
        n, rate = values
        refusal = _refuse(who)
        if refusal:
            return refusal
        try:
            job = service.enqueue_rl({"steps": int(n), "learning_rate": float(rate)})
        except UniNoteError as exc:
            return error_box(str(exc))
        who_trains = "the app's trainer worker picks it up" if service.worker else \
            f"waiting for a worker: {service.worker_hint()}"
        return ok_box(f"Queued RL job {job}: {who_trains}")

    def switch(who, version):
        refusal = _refuse(who)
        if refusal:
            return refusal
        if not version:
            return error_box("Pick a version first")
        try:
            service.activate(version)
        except UniNoteError as exc:
            return error_box(str(exc))
        return ok_box(f"Now serving {version}: new searches use it")

    timer.tick(poll, pick, [jobs, versions, pick, worker], **POLL)
    params = gr.State([defaults.steps, defaults.learning_rate])
    for box in (steps, lr):
        box.change(lambda n, r: [n, r], [steps, lr], params, api_visibility="private", queue=False)
    enqueue.click(with_annotator(start, 1), params, message, api_name="enqueue_rl")
    activate.click(with_annotator(switch, 1), pick, message, api_name="activate_version")
    return poll, [jobs, versions, pick, worker]
