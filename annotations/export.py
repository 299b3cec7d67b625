"""Export grades as RL reward data: graded pairs, listwise groups, preference pairs.

``export_rewards(store, out_dir)`` writes each table as Parquet and JSONL plus ``manifest.json``
(counts, a fingerprint of the grades, per-file sha256, the database URL with its password hidden):

- ``pairs``: one row per (query, candidate): grades, annotator count, mean and majority grade.
  A pair a reviewer adjudicated (``store.adjudicate``) has its ``adjudicated_grade`` as both mean
  and majority grade, so groups and preferences follow the reviewer; ``grades`` stay the raw ones.
- ``groups``: one row per query with 2+ graded candidates (the listwise RL input): candidate ids,
  mean grades, majority grades, annotator counts, in descending mean-grade order.
- ``preferences``: ``{"prompt": query, "chosen": better candidate, "rejected": worse, "margin"}``
  for every two candidates of a query whose mean grades differ by at least ``min_margin``.
- ``judgments``: the raw current grades (one per annotator and pair), for audits.

``load_rewards(dir_or_repo)`` reads an export back (checking the files against the manifest).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from annotations.agreement import overall_alpha
from annotations.errors import AnnotationError
from annotations.models import SCHEMA_VERSION
from uninote.fileio import sha256_file

TABLES = ("pairs", "groups", "preferences", "judgments")
FORMAT_VERSION = 1


def majority_grade(grades: list[int]) -> int:
    """Most frequent grade; ties go to the tied grade closest to the mean, then the lower one."""
    counts = Counter(grades)
    top = max(counts.values())
    tied = [g for g, c in counts.items() if c == top]
    mean = statistics.fmean(grades)
    return min(tied, key=lambda g: (abs(g - mean), g))


def build_pairs(judgments: list[Any],
                adjudicated: dict[tuple[str, str], int] | None = None) -> list[dict[str, Any]]:
    """Aggregate judgments per (query, candidate), sorted by query then candidate. A pair in
    ``adjudicated`` takes the reviewer's grade as its mean and majority grade."""
    adjudicated = adjudicated or {}
    by_pair: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for j in judgments:
        by_pair[(j.query_id, j.candidate_id)].append(j)
    rows = []
    for (q, c), js in sorted(by_pair.items()):
        js.sort(key=lambda j: j.annotator)
        grades = [j.grade for j in js]
        final = adjudicated.get((q, c))
        rows.append(dict(
            query_id=q, candidate_id=c, grades=grades, annotators=[j.annotator for j in js],
            annotator_count=len(js),
            mean_grade=statistics.fmean(grades) if final is None else float(final),
            majority_grade=majority_grade(grades) if final is None else final,
            adjudicated_grade=final,
        ))  # fmt: skip
    return rows


def _by_query(pairs: list[dict[str, Any]]) -> dict[str, list[dict]]:
    by_query: dict[str, list[dict]] = defaultdict(list)
    for p in pairs:
        by_query[p["query_id"]].append(p)
    return by_query


def build_groups(pairs: list[dict[str, Any]], min_group_size: int = 2) -> list[dict[str, Any]]:
    """Listwise groups: per query, its graded candidates by descending mean grade."""
    by_query = _by_query(pairs)
    groups = []
    for q, ps in sorted(by_query.items()):
        if len(ps) < min_group_size:
            continue
        ps = sorted(ps, key=lambda p: (-p["mean_grade"], p["candidate_id"]))
        groups.append(dict(
            query_id=q, candidates=[p["candidate_id"] for p in ps],
            grades=[p["mean_grade"] for p in ps], majority_grades=[p["majority_grade"] for p in ps],
            annotator_counts=[p["annotator_count"] for p in ps], size=len(ps),
        ))  # fmt: skip
    return groups


def build_preferences(pairs: list[dict[str, Any]], min_margin: float = 1.0) -> list[dict[str, Any]]:
    """Preference pairs within each query where mean grades differ by >= ``min_margin``."""
    by_query = _by_query(pairs)
    prefs = []
    for q, ps in sorted(by_query.items()):
        for x, y in combinations(sorted(ps, key=lambda p: p["candidate_id"]), 2):
            margin = x["mean_grade"] - y["mean_grade"]
            if abs(margin) < min_margin or margin == 0:
                continue
            hi, lo = (x, y) if margin > 0 else (y, x)
            prefs.append(dict(prompt=q, chosen=hi["candidate_id"], rejected=lo["candidate_id"],
                              margin=abs(margin), chosen_grade=hi["mean_grade"],
                              rejected_grade=lo["mean_grade"]))  # fmt: skip
    return prefs


def fingerprint(judgments: list[Any], adjudicated: dict[tuple[str, str], int] | None = None) -> str:
    """sha256 over the sorted (annotator, query, candidate, grade) tuples, plus the adjudicated
    grades when there are any: same grades and decisions, same print."""
    rows: list = sorted((j.annotator, j.query_id, j.candidate_id, j.grade) for j in judgments)
    if adjudicated:
        rows.append(sorted([q, c, g] for (q, c), g in adjudicated.items()))
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _write_table(rows: list[dict], out: Path, name: str, columns: list[str]) -> list[str]:
    table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in columns})
    pq.write_table(table, out / f"{name}.parquet")
    with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return [f"{name}.parquet", f"{name}.jsonl"]


def export_rewards(store, out_dir: str | Path, min_margin: float = 1.0,
                   min_group_size: int = 2) -> dict[str, Any]:
    """Write the reward tables and manifest to ``out_dir``; returns the manifest."""
    judgments = store.judgments()
    adjudicated = store.adjudicated_grades()
    pairs = build_pairs(judgments, adjudicated)
    tables = {
        "pairs": pairs,
        "groups": build_groups(pairs, min_group_size),
        "preferences": build_preferences(pairs, min_margin),
        "judgments": [asdict(j) for j in judgments],
    }
    columns = {"pairs": ["query_id", "candidate_id"], "groups": ["query_id"],
               "preferences": ["prompt", "chosen", "rejected"], "judgments": ["annotator"]}
    corpora = store.corpus_names({p["query_id"] for p in pairs} | {p["candidate_id"] for p in pairs})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, rows in tables.items():
        files += _write_table(rows, out, name, columns[name])
    manifest = {
        "format_version": FORMAT_VERSION, "schema_version": SCHEMA_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "db_url": store.redacted_url, "fingerprint": fingerprint(judgments, adjudicated),
        "corpora": corpora, "corpus": corpora[0] if len(corpora) == 1 else None,
        "counts": {name: len(rows) for name, rows in tables.items()}
        | {"annotators": len({j.annotator for j in judgments}), "adjudicated": len(adjudicated)},
        "params": {"min_margin": min_margin, "min_group_size": min_group_size},
        "agreement": overall_alpha(judgments),
        "files": {f: sha256_file(out / f) for f in files},
    }  # fmt: skip
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, out / "manifest.json")  # written last: its presence means a complete export
    return manifest


def push_to_hub(out_dir: str | Path, repo_id: str, token: str | None = None,
                private: bool = True) -> str:
    """Upload an export folder to a Hugging Face Hub dataset repo; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(out_dir), repo_id=repo_id, repo_type="dataset",
                             commit_message="uninote export-rewards")  # fmt: skip
    return str(getattr(info, "commit_url", info))


@dataclass(frozen=True)
class Rewards:
    """An export read back: the tables as lists of dicts, and the manifest."""

    pairs: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    preferences: list[dict[str, Any]]
    judgments: list[dict[str, Any]]
    manifest: dict[str, Any]


def load_rewards(path_or_repo: str | Path, verify: bool = True) -> Rewards:
    """Read an export folder (or a Hub dataset repo id, downloaded with ``snapshot_download``).
    With ``verify``, every file must match the sha256 in ``manifest.json``."""
    root = Path(path_or_repo)
    if not root.exists():
        if "/" not in str(path_or_repo) or str(path_or_repo).startswith((".", "/")):
            raise AnnotationError(f"{root}: no such export folder")
        from huggingface_hub import snapshot_download

        root = Path(snapshot_download(str(path_or_repo), repo_type="dataset"))
    manifest_path = root / "manifest.json"
    if not manifest_path.exists():
        raise AnnotationError(f"{root}: no manifest.json (incomplete export?); run export-rewards again")
    manifest = json.loads(manifest_path.read_text())
    if verify:
        for name, digest in manifest["files"].items():
            if not (root / name).exists() or sha256_file(root / name) != digest:
                raise AnnotationError(f"{root / name}: missing or changed since export (sha256 mismatch)")
    tables = {}
    for name in TABLES:
        table = pq.read_table(root / f"{name}.parquet")
        tables[name] = table.to_pylist() if manifest["counts"].get(name) else []
    return Rewards(manifest=manifest, **tables)
