"""Plotly figures for the Map and Dashboard tabs. Pure: data in, ``go.Figure`` out."""

from __future__ import annotations

import contextlib

import numpy as np
import plotly.graph_objects as go

# plotly's validators (a request thread drawing a figure) and scikit-learn (the background UMAP
# thread, uninote/service/maps.py) both import narwhals.stable lazily; two threads importing it
# for the first time at once can hit Python's import-lock deadlock check (_DeadlockError). Importing
# it here, in the main thread before any of them starts, leaves both to find it loaded (versions of
# them without narwhals never import it, hence no error when it is absent).
with contextlib.suppress(ImportError):
    import narwhals.stable  # noqa: F401

GRADE_COLOURS = ["#c9ced6", "#8fb3e0", "#4a86d0", "#1d4f91"]
_LAYOUT = dict(template="plotly_white", margin=dict(l=40, r=20, t=50, b=40), height=380,
               font=dict(size=13))


def empty(message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font=dict(size=15, color="#667"))
    fig.update_layout(**_LAYOUT, xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def umap_scatter(xy: np.ndarray, note_ids: list[str], titles: list[str], colour_by: list[str],
                 field: str, thumbs: list[str]) -> go.Figure:
    """One marker per note, one trace per value of ``field`` (largest 12 values, rest 'other')."""
    values = np.asarray([str(v) if v not in (None, "") else "(none)" for v in colour_by])
    uniq, counts = np.unique(values, return_counts=True)
    top = set(uniq[np.argsort(-counts)][:12])
    values = np.where(np.isin(values, list(top)), values, "other")
    fig = go.Figure()
    for value in sorted(set(values), key=lambda v: (v == "other", v)):
        m = values == value
        idx = np.flatnonzero(m)
        fig.add_trace(go.Scattergl(
            x=xy[m, 0], y=xy[m, 1], mode="markers", name=f"{value} ({m.sum()})",
            marker=dict(size=6, opacity=0.8),
            customdata=np.stack([[note_ids[i] for i in idx], [thumbs[i] or "" for i in idx]], axis=1),
            text=[titles[i] for i in idx],
            hovertemplate="<b>%{text}</b><br>id %{customdata[0]}<extra>" + str(value) + "</extra>"))
    fig.update_layout(**{**_LAYOUT, "height": 620}, title=f"UMAP of the corpus · colour: {field}",
                      legend=dict(itemsizing="constant"), xaxis=dict(visible=False),
                      yaxis=dict(visible=False), hovermode="closest", dragmode="pan")
    return fig


def grade_distribution(grades: dict[int, int]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[f"grade {g}" for g in range(4)], y=[grades.get(g, 0) for g in range(4)],
                           marker_color=GRADE_COLOURS, text=[grades.get(g, 0) for g in range(4)],
                           textposition="outside"))
    fig.update_layout(**_LAYOUT, title="Grade distribution", yaxis=dict(title="judgments", rangemode="tozero"))
    return fig


def per_annotator(stats) -> go.Figure:
    if not stats:
        return empty("No annotators yet")
    names = [s.annotator for s in stats]
    fig = go.Figure()
    for g in range(4):
        fig.add_trace(go.Bar(name=f"grade {g}", x=names, y=[s.grade_counts.get(g, 0) for s in stats],
                             marker_color=GRADE_COLOURS[g]))
    fig.update_layout(**_LAYOUT, barmode="stack", title="Grades per annotator",
                      yaxis=dict(title="judgments", rangemode="tozero"))
    return fig


def quality_vs_bytes(rows: list[dict], metric: str = "ndcg@10", modality: str = "note") -> go.Figure:
    """One line per granularity: metric against bytes per vector (float32: 4 x dim)."""
    rows = [r for r in rows if r.get("query_modality", modality) == modality and metric in r]
    if not rows:
        return empty("No evaluation for this version yet (run `uninote eval`)")
    fig = go.Figure()
    ticks = sorted({4 * r["dim"] for r in rows})  # label the measured sizes, not log-axis minors
    for gran in sorted({r["granularity"] for r in rows}):
        pts = sorted((r["dim"], r[metric]) for r in rows if r["granularity"] == gran)
        fig.add_trace(go.Scatter(x=[4 * d for d, _ in pts], y=[v for _, v in pts], mode="lines+markers",
                                 name=gran, text=[f"{d}-d" for d, _ in pts],
                                 hovertemplate="%{text}: %{y:.3f}<extra>" + gran + "</extra>"))
    fig.update_layout(**_LAYOUT, title=f"{metric} vs bytes per vector ({modality} queries)",
                      xaxis=dict(title="bytes per vector (float32)", type="log", tickvals=ticks,
                                 ticktext=[f"{b:,} B · {b // 4}-d" for b in ticks]), yaxis_title=metric)
    return fig
