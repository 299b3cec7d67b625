"""Benchmark output: a markdown table, a JSON list of records, a plotly quality-vs-cost chart."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from uninote.bench.measure import RECORD_KEYS, Record

COLUMNS = [("n", "N"), ("dim", "dim"), ("granularity", "gran"), ("strategy", "strategy"), ("index", "index"),
           ("threads", "thr"), ("recall_at_10", "R@10 full"), ("recall_same_dim", "R@10 same-dim"),
           ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("qps", "batch QPS"), ("floor_ms", "floor ms"),
           ("floor_multiple", "p50/floor"), ("bytes_per_vector", "B/vec"),
           ("bytes_scanned_per_query", "MB read/q"), ("build_s", "build s"), ("rss_mb", "RSS MB")]


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "bytes_scanned_per_query":
        return f"{value / 1e6:.2f}"
    if isinstance(value, float):
        if key in ("recall_at_10", "recall_same_dim"):
            return f"{value:.3f}"
        if key == "qps":
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown_table(records: list[Record]) -> str:
    """One row per record, fixed column order (no extra dependency on tabulate)."""
    head = "| " + " | ".join(name for _, name in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(_fmt(k, getattr(r, k)) for k, _ in COLUMNS) + " |" for r in records]
    return "\n".join([head, rule, *rows])


def write_json(records: list[Record], path: str | Path, meta: dict | None = None) -> Path:
    """A JSON list, one object per measured configuration (keys ``RECORD_KEYS`` plus extras)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [dict(r.to_json(), **({"machine": meta} if meta else {})) for r in records]
    for rec in out:
        missing = [k for k in RECORD_KEYS if k not in rec]
        assert not missing, f"bench record lacks {missing}"
    path.write_text(json.dumps(out, indent=1))
    return path


def read_json(path: str | Path) -> list[Record]:
    """Records back from a ``write_json`` file (to re-render tables or merge runs into one chart)."""
    names = {f.name for f in dataclasses.fields(Record)}
    out = []
    for rec in json.loads(Path(path).read_text()):
        rec = dict(rec, recall_at_10=rec.pop("recall@10"))
        out.append(Record(**{k: v for k, v in rec.items() if k in names}))
    return out


def write_chart(records: list[Record], path: str | Path, title: str = "UniNote retrieval: quality vs cost") -> Path:
    """Plotly HTML: recall@10 (vs exact full dim) against single-thread p50 latency, per dim.

    One panel per corpus size N; marker symbol = strategy, colour = dim; hover shows the index.
    """
    import plotly.express as px  # about 1 s to import; only the HTML chart needs it

    rows = [dict(r.to_json(), label=f"{r.strategy} · {r.index}") for r in records if r.threads == 1]
    if not rows:
        raise ValueError("no single-thread records to chart")
    fig = px.scatter(rows, x="p50_ms", y="recall@10", color="dim", symbol="strategy", facet_col="n",
                     hover_data=["index", "bytes_scanned_per_query", "floor_ms", "granularity"], log_x=True,
                     title=title, labels={"p50_ms": "single-query p50 latency, 1 thread (ms, log)",
                                          "recall@10": "recall@10 vs exact full-dim"},
                     color_continuous_scale="Viridis")
    fig.update_traces(marker={"size": 10})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs="cdn")
    return path


def scaling_table(records: list[Record]) -> str:
    """How single-thread p50 grows with N per (strategy, index, dim): one column per N."""
    sizes = sorted({r.n for r in records})
    groups: dict[tuple, dict[int, float]] = {}
    for r in records:
        if r.threads == 1:
            groups.setdefault((r.strategy, r.index, r.dim), {})[r.n] = r.p50_ms
    head = "| strategy | index | dim | " + " | ".join(f"p50 ms N={n:,}" for n in sizes) + " |"
    rule = "|---|---|---|" + "---|" * len(sizes)
    rows = [f"| {s} | {i} | {d} | " + " | ".join(f"{v[n]:.3g}" if n in v else "-" for n in sizes) + " |"
            for (s, i, d), v in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1]))]
    return "\n".join([head, rule, *rows])
