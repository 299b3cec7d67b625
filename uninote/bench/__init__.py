"""Retrieval benchmark: quality (recall@10 vs exact full-dim) against cost (latency, bytes, memory).

``uninote bench`` drives it; ``synthetic.run_synthetic`` and ``real.run_real`` produce one
``Record`` per measured configuration; ``report`` turns them into markdown, JSON and a plotly chart.
"""
