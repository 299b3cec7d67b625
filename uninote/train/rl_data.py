"""The grades the RL stage learns from: collected from the annotation store or an export folder.

Several annotators may grade the same (query, candidate) pair. ``aggregate`` averages them
(``method="mean"``) or, by default for the store and export readers (``method="posterior"``),
takes the expected true grade under a symmetric grader-noise model whose error rate is estimated
from the pairs graded twice or more (``estimate_error_rate``); with no disagreement that is the
plain mean. ``propagate_grades`` adds grades inferred from the collected ones (symmetry, and
candidates graded near the top taken as interchangeable with their query). The fingerprint hashes
the aggregated pairs, so a checkpoint records exactly which reward data made it.
"""

from __future__ import annotations

import hashlib
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
    order: list[tuple[str, str]] = field(default_factory=list)  # (query, candidate) in collection order

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
        """The first ``n_pairs`` pairs in collection order (for the gain-vs-budget curve)."""
        out: dict[str, dict[str, float]] = defaultdict(dict)
        order = self.order or [(q, c) for q, cs in self.grades.items() for c in cs]
        order = [(q, c) for q, c in order if c in self.grades.get(q, {})]
        for q, c in order[:n_pairs]:
            out[q][c] = self.grades[q][c]
        return GradedPairs(dict(out), self.n_judgments, self.corpus, self.source,
                           dict(self.info, budget=n_pairs), order[:n_pairs])


PROPAGATIONS = ("sym", "top", "both")


def propagate_grades(graded: GradedPairs, mode: str, top: float = 2.5) -> GradedPairs:
    """``graded`` plus grades inferred from it (``mode`` in ``PROPAGATIONS``).

    ``sym``: g(c, q) = g(q, c). ``top``: a candidate graded >= ``top`` for q is taken as
    interchangeable with q and inherits q's other grades. ``both``: both. Collected grades always
    win; several inferences for one pair are averaged; no inferred grade pairs a note with itself.
    """
    if mode not in PROPAGATIONS:
        raise ConfigError(f"unknown grade propagation {mode!r}; expected one of {PROPAGATIONS}")
    inferred: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for q, cands in graded.grades.items():
        for c, g in cands.items():
            if mode in ("sym", "both"):
                inferred[c][q].append(g)
            if mode in ("top", "both") and g >= top:
                for b, gb in cands.items():
                    if b != c:
                        inferred[c][b].append(gb)
    grades = {q: dict(cands) for q, cands in graded.grades.items()}
    for q, cands in inferred.items():
        for c, gs in cands.items():
            if c != q and c not in grades.get(q, {}):
                grades.setdefault(q, {})[c] = sum(gs) / len(gs)
    return GradedPairs(grades, graded.n_judgments, graded.corpus, f"{graded.source}+{mode}", graded.info, graded.order)


AGGREGATIONS = ("mean", "posterior")
GRADE_LEVELS = (0, 1, 2, 3)


def estimate_error_rate(groups: Iterable[list[float]]) -> float:
    """Grader error rate e from pairs graded by several annotators (0 when none are).

    Model: a grader gives the true grade with probability 1 - e, else one of the 3 other grades
    uniformly. Two graders then disagree with probability d = 1 - (1 - e)**2 - e**2 / 3, so
    e = 3/4 * (1 - sqrt(1 - 4d/3)) from the observed share d of disagreeing annotator pairs.
    """
    agree = total = 0
    for gs in groups:
        for i in range(len(gs)):
            for j in range(i + 1, len(gs)):
                total += 1
                agree += gs[i] == gs[j]
    if total == 0:
        return 0.0
    d = min(1.0 - agree / total, 0.75)
    return 0.75 * (1.0 - (1.0 - 4.0 * d / 3.0) ** 0.5)


def posterior_grade(observed: list[float], error_rate: float, prior: list[float]) -> float:
    """Expected true grade given independent noisy grades (model of ``estimate_error_rate``).

    ``prior[g]`` is the share of true grade g. Non-integer grades, a zero error rate, or grades the
    model calls impossible fall back to the mean.
    """
    mean = sum(observed) / len(observed)
    if error_rate <= 0.0 or any(float(o) not in GRADE_LEVELS for o in observed):
        return mean
    post = []
    for g in GRADE_LEVELS:
        like = prior[g]
        for o in observed:
            like *= (1.0 - error_rate) if o == g else error_rate / 3.0
        post.append(like)
    z = sum(post)
    return mean if z <= 0 else sum(g * p for g, p in zip(GRADE_LEVELS, post)) / z


def aggregate(records: Iterable[tuple[str, str, float]], method: str = "mean",
              info: dict | None = None,
              adjudicated: dict[tuple[str, str], float] | None = None) -> tuple[dict[str, dict[str, float]], int]:
    """Grade per (query, candidate) over annotators (``AGGREGATIONS``), and how many judgments were read.

    ``info`` (optional dict) receives the estimated grader error rate for ``method="posterior"``.
    A pair in ``adjudicated`` (a reviewer's final grade, ``store.adjudicate``) takes that grade
    whatever the method; the error rate is still estimated from the annotators' own grades.
    """
    if method not in AGGREGATIONS:
        raise ConfigError(f"unknown grade aggregation {method!r}; expected one of {AGGREGATIONS}")
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    n = 0
    for q, c, g in records:
        g = float(g)
        if not 0.0 <= g <= 3.0:
            raise ConfigError(f"grade {g} for ({q}, {c}) is outside 0-3")
        sums[(str(q), str(c))].append(g)
        n += 1
    combine = lambda gs: sum(gs) / len(gs)  # noqa: E731
    if method == "posterior":
        rate = estimate_error_rate(gs for gs in sums.values() if len(gs) > 1)
        counts = [sum(g == level for gs in sums.values() for g in gs) + 1.0 for level in GRADE_LEVELS]
        prior = [c / sum(counts) for c in counts]
        combine = lambda gs: posterior_grade(gs, rate, prior)  # noqa: E731
        if info is not None:
            info.update(estimated_error_rate=round(rate, 4), grade_prior=[round(p, 4) for p in prior])
    grades: dict[str, dict[str, float]] = defaultdict(dict)
    adjudicated = adjudicated or {}
    for (q, c), gs in sums.items():  # dicts keep first-seen order: collection order survives
        final = adjudicated.get((q, c))
        grades[q][c] = combine(gs) if final is None else float(final)
    return dict(grades), n


def from_store(url: str, method: str = "posterior") -> GradedPairs:
    """Every current judgment in the annotation store at ``url`` (SQLAlchemy URL or SQLite path)."""
    from annotations.store import AnnotationStore  # SQLAlchemy, about 2 s to import: store readers only

    with AnnotationStore(url) as store:
        return _from_open_store(store, method)


def _from_open_store(store, method: str = "posterior") -> GradedPairs:
    judgments = store.judgments()
    judgments = sorted(judgments, key=lambda j: (j.created_at, j.id))  # collection order, for head()
    info: dict = {}
    grades, n = aggregate(((j.query_id, j.candidate_id, j.grade) for j in judgments), method, info,
                          adjudicated=store.adjudicated_grades())
    corpora = corpus_names(store, {q for q in grades} | {c for cs in grades.values() for c in cs})
    corpus = corpora[0] if len(corpora) == 1 else None
    order = list(dict.fromkeys((j.query_id, j.candidate_id) for j in judgments))
    return GradedPairs(grades, n, corpus, f"store:{store.redacted_url}", {"corpora": corpora, **info}, order)


def corpus_names(store, note_ids: set[str]) -> list[str]:
    """Names of the corpora the store records for these notes (sorted, uploads excluded)."""
    from sqlalchemy import select  # SQLAlchemy: see from_store

    from annotations.models import NoteRow

    names: set[str] = set()
    ids = sorted(note_ids)
    with store.database.read() as s:
        for start in range(0, len(ids), 500):
            rows = s.execute(select(NoteRow.corpus).where(NoteRow.note_id.in_(ids[start:start + 500]),
                                                          NoteRow.uploaded.is_(False)).distinct())
            names.update(r[0] for r in rows if r[0])
    return sorted(names)


def from_rewards_dir(directory: str | Path, method: str = "posterior") -> GradedPairs:
    """Graded pairs from an ``uninote export-rewards`` folder (``annotations.export.load_rewards``).

    Raw judgments are aggregated exactly like ``from_store`` (mean over annotators, collection
    order kept); an export without them falls back to its ``pairs`` table (``mean_grade``).
    Adjudicated pairs (``adjudicated_grade`` in ``pairs``) take the reviewer's grade.
    """
    from annotations.export import load_rewards  # the annotations package: see from_store

    d = Path(directory)
    if not d.exists():
        raise ConfigError(f"{d}: rewards folder not found (write one with `uninote export-rewards`)")
    data = load_rewards(d)
    if data.judgments:
        rows = sorted(data.judgments, key=lambda o: (o.get("created_at") or 0.0, o.get("id") or 0))
        records = [(o["query_id"], o["candidate_id"], o["grade"]) for o in rows]
    else:
        records = [(o["query_id"], o["candidate_id"], o["mean_grade"]) for o in data.pairs]
    adjudicated = {(o["query_id"], o["candidate_id"]): o["adjudicated_grade"] for o in data.pairs
                   if o.get("adjudicated_grade") is not None}
    info: dict = {}
    grades, n = aggregate(records, method, info, adjudicated=adjudicated)
    order = list(dict.fromkeys((q, c) for q, c, _ in records))
    corpus = data.manifest.get("corpus")
    return GradedPairs(grades, n, corpus, f"dir:{d}", {"manifest_fingerprint": data.manifest.get("fingerprint"),
                                                       **info}, order)


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
