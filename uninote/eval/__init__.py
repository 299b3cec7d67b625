"""Evaluation: graded ranking metrics and the modality x granularity x dim harness."""

from uninote.eval.harness import EvalReport, evaluate, markdown_table, resolve_dims
from uninote.eval.metrics import mrr_at_k, ndcg_at_k, r_cap_at_k

__all__ = ["EvalReport", "evaluate", "markdown_table", "mrr_at_k", "ndcg_at_k", "r_cap_at_k",
           "resolve_dims"]
