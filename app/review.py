"""Review: one's own past grades (change a grade or its comment) and the pairs annotators disagree
on by two grades or more (a reviewer's adjudication, which the RL export prefers)."""

from __future__ import annotations

import pandas as pd

import gradio as gr

from app.auth import with_annotator
from app.views import GRADE_NAMES, error_box, ok_box
from uninote.errors import UniNoteError
from uninote.service import UniNoteService

GRADE_CHOICES = [(GRADE_NAMES[g], g) for g in range(4)]


def pair_key(query_id: str, candidate_id: str) -> str:
    return f"{query_id} → {candidate_id}"


def _split(key: str | None) -> tuple[str, str]:
    if not key or " → " not in key:
        raise UniNoteError("pick a pair from the list first")
    q, c = key.split(" → ", 1)
    return q, c


def my_grades_table(service: UniNoteService, who: str) -> pd.DataFrame:
    rows = [{"pair": pair_key(j.query_id, j.candidate_id), "grade": j.grade, "comment": j.comment or "",
             "changed": j.revision > 1,
             "when": pd.to_datetime(j.updated_at, unit="s").strftime("%Y-%m-%d %H:%M:%S")}
            for j in service.my_grades(who)]
    return pd.DataFrame(rows, columns=["pair", "grade", "comment", "changed", "when"])


def disagreements_table(rows: list[dict]) -> pd.DataFrame:
    out = [{"pair": pair_key(r["query_id"], r["candidate_id"]), "spread": r["spread"],
            "grades": ", ".join(f"{a}: {g}" for a, g in r["grades"].items()),
            "adjudicated": "" if r["adjudicated"] is None else r["adjudicated"]} for r in rows]
    return pd.DataFrame(out, columns=["pair", "spread", "grades", "adjudicated"])


def refresh(service: UniNoteService, who: str | None, message: str = ""):
    """Outputs: own grades table, own pairs, disagreements table, disputed pairs, adjudication note, message."""
    if not who or not service.ready:
        why = "Sign in to review your grades." if not who else "Review opens when the model is ready."
        return (pd.DataFrame(), gr.update(choices=[], value=None), pd.DataFrame(),
                gr.update(choices=[], value=None), "", error_box(why) if not who else ok_box(why))
    mine = my_grades_table(service, who)
    rows = service.disagreements()
    who_may = ("" if service.can_adjudicate(who) else
               f"Only reviewers ({', '.join(service.config.reviewers)}) can adjudicate.")
    if not rows:
        who_may = "No pair has grades two or more apart." + (f" {who_may}" if who_may else "")
    disputed = [pair_key(r["query_id"], r["candidate_id"]) for r in rows]
    return (mine, gr.update(choices=list(mine["pair"]), value=None), disagreements_table(rows),
            gr.update(choices=disputed, value=None), who_may, message)


def build(service: UniNoteService):
    gr.Markdown("#### My grades: pick one to change its grade or comment")
    mine = gr.Dataframe(interactive=False, elem_id="review-mine", max_height=320)
    with gr.Row():
        my_pair = gr.Dropdown(label="Pair", choices=[], elem_id="review-pair", scale=2)
        new_grade = gr.Radio(GRADE_CHOICES, label="New grade", elem_id="review-grade", scale=2)
        new_comment = gr.Textbox(label="Comment (empty keeps the old one)", elem_id="review-comment", scale=2)
        change_btn = gr.Button("Change grade", elem_id="review-change", scale=1)
    gr.Markdown("#### Disagreements: pairs whose grades differ by 2 or more")
    disputes = gr.Dataframe(interactive=False, elem_id="review-disputes", max_height=320)
    adjudicate_note = gr.Markdown(elem_id="review-adjudicate-note", elem_classes=["un-muted"])
    with gr.Row():
        disputed = gr.Dropdown(label="Disputed pair", choices=[], elem_id="review-disputed", scale=2)
        final = gr.Radio(GRADE_CHOICES, label="Reviewer's grade (the RL export uses it)",
                         elem_id="review-final", scale=2)
        why = gr.Textbox(label="Reason", elem_id="review-reason", scale=2)
        adjudicate_btn = gr.Button("Adjudicate", elem_id="review-adjudicate", scale=1)
    message = gr.HTML(elem_id="review-message")
    outputs = [mine, my_pair, disputes, disputed, adjudicate_note, message]

    def load(who):
        return refresh(service, who)

    def act(who, form: dict, pair, grade, text, action, done: str):
        """Run ``action(who, q, c, grade, text)`` for the picked pair, then show the tables again."""
        try:
            q, c = _split(form[pair])
            if form[grade] is None:
                raise UniNoteError("pick a grade first")
            saved = action(who, q, c, form[grade], (form[text] or "").strip() or None)
        except UniNoteError as exc:
            return refresh(service, who, error_box(str(exc)))
        return refresh(service, who, ok_box(f"{done} {pair_key(q, c)}: {GRADE_NAMES[saved.grade]}"))

    def change(who, form: dict):
        return act(who, form, my_pair, new_grade, new_comment, service.change_grade, "Changed")

    def adjudicate(who, form: dict):
        return act(who, form, disputed, final, why, service.adjudicate, "Adjudicated")

    change_btn.click(with_annotator(change, 1), {my_pair, new_grade, new_comment}, outputs,
                     api_visibility="private")
    adjudicate_btn.click(with_annotator(adjudicate, 1), {disputed, final, why}, outputs,
                         api_visibility="private")
    return outputs, with_annotator(load, 0)
