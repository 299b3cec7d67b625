"""Annotate: grade (query, candidate) pairs from the store's queue, 0-3, with keyboard shortcuts.

The grade is written to the store before the next pair is fetched, inside the same callback, so
what the annotator sees next is always after a saved grade. Shortcuts (static/uninote.js):
0-3 grade, u undo, s skip (not while typing a comment; Esc leaves the comment box). The
guidelines (what each grade means) sit beside the buttons; a grade that arrives too soon after
its pair was shown (a double key press) is refused with a message, never saved silently. While
the service starts (a first run builds the model version), the tab says what it waits for, with
the build's progress, and shows the first pair once it is ready.
"""

from __future__ import annotations

import functools

import gradio as gr

from app.auth import on_spaces, with_annotator
from app.views import GRADE_NAMES, error_box, note_card, ok_box, waiting_box
from uninote.errors import UniNoteError
from uninote.service import UniNoteService


def _task_dict(task) -> dict | None:
    if task is None:
        return None
    task_id = task.task_id if hasattr(task, "task_id") else task.id  # a Judgment (undo) or a Task
    return {"task_id": task_id,
            "query_id": task.query_id, "candidate_id": task.candidate_id,
            "rank": getattr(task, "rank", None), "dim": getattr(task, "dim", None),
            "granularity": getattr(task, "granularity", None),
            "strategy": getattr(task, "strategy", None)}


def _progress(service: UniNoteService, who: str) -> str:
    s = service.annotator_stats(who)
    dist = " · ".join(f"{g}: {s.grade_counts.get(g, 0)}" for g in range(4))
    speed = f" · median {s.median_seconds:.1f} s/pair" if s.median_seconds else ""
    left = service.queue_left(who)
    left_txt = f" · **{left}** pairs left in the queue" if left is not None else ""
    return f"**{who}** · **{s.n_grades}** graded ({dist}){speed}{left_txt}"


def next_task(service: UniNoteService, who: str | None) -> dict | None:
    """The annotator's next pair, None without a login or before the service is ready."""
    return _task_dict(service.next_pair(who)) if who and service.ready else None


def show(service: UniNoteService, who: str | None, task: dict | None, note: str = ""):
    """Outputs for one pair: state, two photos, two cards, progress, message."""
    if not service.ready:
        return (None, None, None, "", "", "", waiting_box(service, "Grading opens when it is ready."))
    if not who:
        login = "Sign in with Hugging Face above" if on_spaces() else \
            "Start the app with UNINOTE_USERS='name:password' and log in"
        return (None, None, None, "", "", "", error_box(f"Grading needs a signed-in annotator. {login}."))
    progress = _progress(service, who)
    if task is None:
        return (None, None, None, "", "", progress, ok_box("The queue is empty: nothing left to grade. "
                                                          "Thank you!") + note)
    q, c = service.note(task["query_id"]), service.note(task["candidate_id"])
    return (task, service.thumbnail(q.note_id), service.thumbnail(c.note_id),
            note_card(q.title, q.body, q.meta, q.note_id), note_card(c.title, c.body, c.meta, c.note_id),
            progress, note)


def build(service: UniNoteService) -> tuple[gr.Button, list, callable]:
    task = gr.State(None)
    with gr.Row():
        if on_spaces():
            gr.LoginButton()
        progress = gr.Markdown(elem_id="annotate-progress")
    with gr.Row(equal_height=True):
        with gr.Column():
            gr.Markdown("#### Query")
            q_photo = gr.Image(show_label=False, height=340, interactive=False, buttons=[],
                               elem_id="annotate-query-photo")
            q_card = gr.HTML()
        with gr.Column():
            gr.Markdown("#### Candidate")
            c_photo = gr.Image(show_label=False, height=340, interactive=False, buttons=[],
                               elem_id="annotate-candidate-photo")
            c_card = gr.HTML()
    gr.Markdown("How relevant is the **candidate** as a neighbour of the **query**?",
                elem_classes=["un-center"])
    with gr.Row(elem_classes=["un-grade-row"]):
        grade_btns = [gr.Button(GRADE_NAMES[g], elem_id=f"grade-{g}", variant="primary" if g == 3 else
                                "secondary") for g in range(4)]
    with gr.Row(elem_classes=["un-grade-row"]):
        skip_btn = gr.Button("Skip (s)", elem_id="skip-btn", size="sm")
        undo_btn = gr.Button("Undo (u)", elem_id="undo-btn", size="sm")
    comment = gr.Textbox(label="Comment (optional, saved with the grade)", lines=1, max_length=2000,
                         elem_id="annotate-comment", placeholder="Why this grade? e.g. same cut, other colour")
    gr.Markdown("Keys: **0–3** grade · **s** skip · **u** undo · **Esc** leaves the comment box",
                elem_classes=["un-muted", "un-center"])
    message = gr.HTML(elem_id="annotate-message")
    with gr.Accordion("Guidelines: what each grade means", open=True, elem_id="annotate-guidelines"):
        gr.Markdown(service.guidelines())
    outputs = [task, q_photo, c_photo, q_card, c_card, progress, message]
    waiting = gr.Timer(2.0, active=not service.ready)  # until the service is ready

    def load(who):
        return show(service, who, next_task(service, who))

    def poll(who, current):
        """While the service starts: the waiting line; once ready: the first pair, then stop."""
        if not service.ready:
            return show(service, who, None) + (gr.Timer(active=True),)
        if current is not None:  # the pair is already on screen
            return tuple(gr.update() for _ in outputs) + (gr.Timer(active=False),)
        return load(who) + (gr.Timer(active=False),)

    def grade(g: int, who, current: dict | None, note: str | None):
        if current is None:
            return show(service, who, next_task(service, who)) + (gr.update(),)
        try:
            ctx = {k: current[k] for k in ("task_id", "rank", "dim", "granularity", "strategy")}
            ctx["comment"] = (note or "").strip() or None
            service.grade(who, current["query_id"], current["candidate_id"], g, ctx, interactive=True)
        except UniNoteError as exc:  # a double key press lands here too: the pair stays on screen
            return show(service, who, current, error_box(str(exc))) + (gr.update(),)
        saved = f"Saved {GRADE_NAMES[g]}" + (" with your comment" if ctx["comment"] else "")
        return show(service, who, next_task(service, who), ok_box(saved)) + ("",)

    def skip(who, current):
        if who and current and current.get("task_id") is not None:
            service.skip(who, current["task_id"])
        return show(service, who, next_task(service, who), ok_box("Skipped"))

    def undo(who, current):
        if not who or not service.ready:
            return show(service, who, None)
        restored = service.undo(who)
        if restored is None:
            return show(service, who, current, ok_box("Nothing to undo"))
        return show(service, who, _task_dict(restored), ok_box("Undone: grade this pair again"))

    # Grading is a few milliseconds of database work: answered directly (queue=False) so the next
    # pair shows fast; the write completes before the next pair is fetched, in the same call.
    # No progress overlay either: it would flash over all seven outputs for a few milliseconds.
    fast = dict(api_visibility="private", queue=False, show_progress="hidden")
    for g, btn in enumerate(grade_btns):
        btn.click(with_annotator(functools.partial(grade, g), 2), [task, comment], outputs + [comment], **fast)
    skip_btn.click(with_annotator(skip, 1), task, outputs, **fast)
    undo_btn.click(with_annotator(undo, 1), task, outputs, **fast)
    waiting.tick(with_annotator(poll, 1), task, outputs + [waiting], api_visibility="private", queue=False)

    return outputs, with_annotator(load, 0)
