"""Trainer: queue an RL run from the collected grades, watch it, and switch the served version.

The RL worker (``uninote worker``) claims jobs from the annotation store and registers the new
version folder when done; this tab only reads and writes the store through the service. Switching
versions loads the new folder first and then swaps one reference, so searches in flight finish on
the version they started with and no restart is needed.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from app.dashboard import versions_table
from app.views import error_box, ok_box
from uninote.errors import UniNoteError
from uninote.service import UniNoteService


def jobs_table(service: UniNoteService) -> pd.DataFrame:
    rows = [{"job": j.id, "kind": j.kind, "status": j.status, "progress": f"{j.progress:.0%}",
             "message": j.error or j.message or "", "from": j.params.get("base_version", ""),
             "result": (j.result or {}).get("version", "")} for j in service.jobs()]
    return pd.DataFrame(rows, columns=["job", "kind", "status", "progress", "message", "from", "result"])


def build(service: UniNoteService):
    gr.Markdown("Queue an RL run that learns from the grades collected so far. A worker "
                "(`uninote worker`) picks it up; when it finishes, its version appears below and "
                "can be served without a restart.")
    with gr.Row():
        steps = gr.Number(value=200, precision=0, label="RL steps", minimum=1, maximum=100000)
        lr = gr.Number(value=1e-4, label="Learning rate", minimum=0)
        enqueue = gr.Button("Start RL run", variant="primary", elem_id="trainer-enqueue")
    message = gr.HTML()
    jobs = gr.Dataframe(interactive=False, elem_id="trainer-jobs", label="Jobs (refreshes every 2 s)")
    gr.Markdown("#### Versions")
    versions = gr.Dataframe(interactive=False, elem_id="trainer-versions")
    with gr.Row():
        pick = gr.Dropdown([], label="Serve version", elem_id="trainer-version", scale=3)
        activate = gr.Button("Switch", elem_id="trainer-activate", scale=1)
    timer = gr.Timer(2.0)

    def poll():
        if not service.ready:
            return pd.DataFrame(), pd.DataFrame(), gr.update()
        names = [v.version for v in service.versions()]
        return jobs_table(service), versions_table(service), gr.update(choices=names)

    def start(n, rate):
        try:
            job = service.enqueue_rl({"steps": int(n), "lr": float(rate)})
        except UniNoteError as exc:
            return error_box(str(exc))
        return ok_box(f"Queued RL job {job}: waiting for a worker")

    def switch(version):
        if not version:
            return error_box("Pick a version first")
        try:
            service.activate(version)
        except UniNoteError as exc:
            return error_box(str(exc))
        return ok_box(f"Now serving {version}: new searches use it")

    timer.tick(poll, None, [jobs, versions, pick], api_visibility="private")
    enqueue.click(start, [steps, lr], message, api_name="enqueue_rl")
    activate.click(switch, pick, message, api_name="activate_version")
    return poll, [jobs, versions, pick]
