"""The grades the RL stage learns from: collected from the annotation store or an export folder.

Several annotators may grade the same (query, candidate) pair; their grades are averaged (a float
in [0, 3]). The fingerprint hashes the aggregated pairs, so a checkpoint records exactly which
reward data made it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from uninote.errors import ConfigError


@dataclass
class GradedPairs:
    """Aggregated graded pairs: ``grades[query_id][candidate_id] = mean grade``."""

    grades: dict[str, dict[str, float]]
    n_judgments: int = 0
    corpus: str | None = None  # the corpus the grades refer to, as recorded by the store
    source: str = ""
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(c) for c in self.grades.values())

    def triples(self) -> list[tuple[str, str, float]]:
        return [(q, c, g) for q in sorted(self.grades) for c, g in sorted(self.grades[q].items())]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for q, c, g in self.triples():
            h.update(f"{q}\t{c}\t{g:.4f}\n".encode())
        return h.hexdigest()[:16]

    def restrict(self, note_ids: Iterable[str]) -> "GradedPairs":
        """Only pairs whose query and candidate are both in ``note_ids`` (e.g. the training corpus)."""
        keep = set(note_ids)
        grades = {q: {c: g for c, g in cs.items() if c in keep and c != q} for q, cs in self.grades.items() if q in keep}
        grades = {q: cs for q, cs in grades.items() if cs}
        dropped = len(self) - sum(len(c) for c in grades.values())
        return GradedPairs(grades, self.n_judgments, self.corpus, self.source, dict(self.info, dropped_pairs=dropped))

    def head(self, n_pairs: int) -> "GradedPairs":
        """The first ``n_pairs`` pairs in a stable order (for the gain-vs-budget curve)."""
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for q, c, g in self.triples()[:n_pairs]:
            out[q][c] = g
        return GradedPairs(dict(out), self.n_judgments, self.corpus, self.source, dict(self.info))


def aggregate(records: Iterable[tuple[str, str, float]]) -> tuple[dict[str, dict[str, float]], int]:
    """Mean grade per (query, candidate) over annotators, and how many judgments were read."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    n = 0
    for q, c, g in records:
        g = float(g)
        if not 0.0 <= g <= 3.0:
            raise ConfigError(f"grade {g} for ({q}, {c}) is outside 0-3")
        sums[(str(q), str(c))].append(g)
        n += 1
    grades: dict[str, dict[str, float]] = defaultdict(dict)
    for (q, c), gs in sums.items():
        grades[q][c] = sum(gs) / len(gs)
    return dict(grades), n


def from_store(url: str) -> GradedPairs:
    """Every current judgment in the annotation store at ``url`` (SQLAlchemy URL or SQLite path)."""
    from annotations.store import AnnotationStore

    store = AnnotationStore(url)
    judgments = store.judgments()
    grades, n = aggregate((j.query_id, j.candidate_id, j.grade) for j in judgments)
    corpora = corpus_names(store, {q for q in grades} | {c for cs in grades.values() for c in cs})
    corpus = corpora[0] if len(corpora) == 1 else None
    return GradedPairs(grades, n, corpus, f"store:{url}", {"corpora": corpora})


def corpus_names(store, note_ids: set[str]) -> list[str]:
    """Names of the corpora the store records for these notes (sorted, uploads excluded)."""
    from sqlalchemy import select

    from annotations.models import NoteRow

    names: set[str] = set()
    ids = sorted(note_ids)
    with store.session() as s:
        for start in range(0, len(ids), 500):
            rows = s.execute(select(NoteRow.corpus).where(NoteRow.note_id.in_(ids[start:start + 500]),
                                                          NoteRow.uploaded.is_(False)).distinct())
            names.update(r[0] for r in rows if r[0])
    return sorted(names)


def from_rewards_dir(directory: str | Path) -> GradedPairs:
    """Graded pairs exported by ``annotations/export.py`` (``load_rewards``) or a ``graded.jsonl``."""
    d = Path(directory)
    if not d.exists():
        raise ConfigError(f"{d}: rewards folder not found (write one with the annotations export)")
    try:
        from annotations.export import load_rewards
    except ImportError:
        load_rewards = None
    if load_rewards is not None:
        data = load_rewards(d)
        records = _records_from_export(data)
    else:
        path = d / "graded.jsonl"
        if not path.exists():
            raise ConfigError(f"{d}: expected graded.jsonl (query_id, candidate_id, grade per line)")
        records = []
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    o = json.loads(line)
                    records.append((o["query_id"], o["candidate_id"], o["grade"]))
                except (json.JSONDecodeError, KeyError) as exc:
                    raise ConfigError(f"{path}:{i}: bad graded pair ({exc})") from None
    grades, n = aggregate(records)
    meta = d / "meta.json"
    corpus = json.loads(meta.read_text()).get("corpus") if meta.exists() else None
    return GradedPairs(grades, n, corpus, f"dir:{d}")


def _records_from_export(data) -> list[tuple[str, str, float]]:
    """Accept the export's graded pairs as a DataFrame, a list of dicts or an object holding them."""
    for attr in ("graded", "pairs", "graded_pairs"):
        if hasattr(data, attr) and not callable(getattr(data, attr)):
            data = getattr(data, attr)
            break
    if isinstance(data, dict):
        data = data.get("graded", data.get("graded_pairs", data.get("pairs", data)))
    if hasattr(data, "to_dict"):
        data = data.to_dict("records")
    out = []
    for o in data:
        o = o if isinstance(o, dict) else vars(o)
        out.append((o["query_id"], o["candidate_id"], o.get("grade", o.get("mean_grade"))))
    return out


def resolve_corpus_path(name_or_path: str | None) -> str:
    """The corpus a store names: an existing path, or ``$UNINOTE_CACHE/prepared/<name>``."""
    if not name_or_path:
        raise ConfigError("the grades do not name one corpus; pass --corpus DIR")
    if Path(name_or_path).exists():
        return str(name_or_path)
    cache = Path(os.environ.get("UNINOTE_CACHE", Path.home() / ".cache" / "uninote"))
    candidate = cache / "prepared" / name_or_path
    if candidate.exists():
        return str(candidate)
    raise ConfigError(f"the store records corpus {name_or_path!r} but neither that path nor {candidate} "
                      "exists; pass --corpus DIR")
