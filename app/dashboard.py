"""Dashboard: annotation progress and agreement, evaluation per dim and granularity, versions."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from app import plots
from app.views import waiting_box
from uninote.service import UniNoteService


def versions_table(service: UniNoteService) -> pd.DataFrame:
    rows = []
    for v in service.versions():
        best = max((m for k, m in v.metrics.items() if isinstance(m, (int, float)) and "ndcg" in k),
                   default=None)
        rows.append({"version": v.version, "active": "●" if v.active else "", "parent": v.parent or "",
                     "corpus": v.corpus or "", "best ndcg@10": None if best is None else round(best, 4),
                     "created": pd.to_datetime(v.created_at, unit="s").strftime("%Y-%m-%d %H:%M"),
                     "warnings": "; ".join(v.metrics.get("warnings") or [])})  # e.g. noisy grades (RL)
    return pd.DataFrame(rows, columns=["version", "active", "parent", "corpus", "best ndcg@10", "created", "warnings"])


def annotator_table(summary: dict) -> pd.DataFrame:
    rows = [{"annotator": s.annotator, "graded": s.n_grades, "skipped": s.n_skipped,
             **{f"grade {g}": s.grade_counts.get(g, 0) for g in range(4)},
             "median s/pair": None if s.median_seconds is None else round(s.median_seconds, 1)}
            for s in summary["annotators"]]
    return pd.DataFrame(rows)


def agreement_line(report: dict) -> str:
    """Krippendorff's alpha and each two annotators' quadratic kappa, or why they cannot be shown."""
    alpha = (f"Krippendorff's α (ordinal) **{report['alpha']:.2f}** on {report['units']} pairs"
             if report["alpha_reason"] is None else f"α: {report['alpha_reason']}")
    if report["kappa_reason"] is not None:
        return f"{alpha} · κ: {report['kappa_reason']}"
    kappas = ", ".join(f"{r['annotator_a']}–{r['annotator_b']} **{r['kappa_quadratic']:.2f}** ({r['n']} pairs)"
                       for r in report["pairwise"][:6] if r["kappa_quadratic"] is not None)
    return f"{alpha} · quadratic κ: {kappas}"


def refresh(service: UniNoteService, metric: str, modality: str):
    if not service.ready:
        wait = plots.empty("Waiting for the model version")
        return (waiting_box(service, "The dashboard fills in when it is ready."), wait, wait, wait,
                pd.DataFrame(), pd.DataFrame())
    s = service.annotation_summary()
    agree = ("—" if s["exact_agreement"] is None else
             f"{s['exact_agreement']:.0%} exact agreement on {s['n_multi']} pairs graded by 2+ annotators "
             f"(mean spread {s['mean_grade_spread']:.2f} grades)")
    head = (f"**{s['n_judgments']:,}** judgments on **{s['n_pairs']:,}** pairs by "
            f"**{len(s['annotators'])}** annotators · agreement: {agree} · serving **{service.served.version}**"
            f"\n\n{agreement_line(service.agreement())}")
    return (head, plots.grade_distribution(s["grades"]), plots.per_annotator(s["annotators"]),
            plots.quality_vs_bytes(service.eval_results(), metric, modality),
            annotator_table(s), versions_table(service))


def build(service: UniNoteService):
    with gr.Row():
        metric = gr.Dropdown(["ndcg@10", "r_cap@10", "mrr@10"], value="ndcg@10", label="Metric")
        modality = gr.Dropdown(["note", "image", "text"], value="note", label="Query modality")
        again = gr.Button("Refresh", elem_id="dashboard-refresh")
    head = gr.Markdown(elem_id="dashboard-head")
    with gr.Row():
        grades = gr.Plot(show_label=False)
        per_ann = gr.Plot(show_label=False)
    quality = gr.Plot(show_label=False, elem_id="dashboard-quality")
    gr.Markdown("#### Annotators")
    ann_table = gr.Dataframe(interactive=False)
    gr.Markdown("#### Model versions")
    ver_table = gr.Dataframe(interactive=False)
    outputs = [head, grades, per_ann, quality, ann_table, ver_table]

    def run(m, q):
        return refresh(service, m, q)

    for trigger in (again.click, metric.change, modality.change):
        trigger(run, [metric, modality], outputs, api_visibility="private")
    return run, [metric, modality], outputs
