"""Which pairs to label: a pure function from model neighbour lists to prioritised tasks.

Input: ``{setting: {query_id: [candidate ids in rank order]}}`` (items may also be
``(id, score)`` pairs: with ``QueueConfig.score_threshold`` set, a score within ``score_margin`` of
it also counts as near the decision boundary), where a setting is a
``Setting(dim, granularity, strategy)`` (or its text key ``"dim=64/granularity=note/strategy=exact"``,
``dim=full`` for the full dimension; ``/version=v3`` names the model version a list came from
when lists of several versions are planned together). Each (query, candidate) pair becomes at most one task with a
``source`` saying why it is worth a grade:

- ``disagreement``: in the top-k under one setting but not another (e.g. top-k at 64 dims but
  not at full dim, or at ``exact`` but not ``ann``). The grade tells which setting was right.
- ``boundary``: ranked within ``boundary_window`` of the cut-off k in some setting, or scored
  near ``score_threshold``.
- ``agreed``: in the top-k of every setting; the bread and butter of listwise RL groups.
- ``random``: ``random_per_query`` uniformly drawn deeper candidates (ranked, but past every
  other source) per query. They find the relevant notes the model ranks too low, which the shown
  top-k never does: on the fashion catalogue, RL from 2,000 grades spread over ranks 5-30 gained
  +0.015 / +0.012 ndcg@10 (d=64 / full) against +0.012 / +0.010 from ranks 0-15 (two seeds each,
  docs/results/rl.md "Tried and not adopted"). So pass neighbour lists deeper than k (the app and
  ``simulate-annotators`` plan from 3k); the per-query cap keeps room for these draws.

Queries with few grades are preferred at hand-out time (``LabelQueue.next_task``), after tasks
another annotator has already started; the first ``overlap_first`` tasks handed out from a campaign
(the tasks planned from one model version) need ``overlap_annotators`` grades whatever their draw,
so agreement can be measured after tens of grades instead of hundreds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from uninote.errors import ConfigError

SOURCES = ("disagreement", "boundary", "agreed", "random")


@dataclass(frozen=True)
class Setting:
    """How a neighbour list was produced: embedding dim (None = full), granularity, strategy, and
    the model version (None = the one the tasks are added for)."""

    dim: int | None = None
    granularity: str = "note"
    strategy: str = "exact"
    version: str | None = None

    @property
    def key(self) -> str:
        dim = "full" if self.dim is None else str(self.dim)
        key = f"dim={dim}/granularity={self.granularity}/strategy={self.strategy}"
        return key if self.version is None else f"{key}/version={self.version}"

    @classmethod
    def parse(cls, value: "Setting | str | Mapping[str, Any]") -> "Setting":
        """Accept a Setting, its ``key`` text or a dict with dim/granularity/strategy."""
        if isinstance(value, Setting):
            return value
        if isinstance(value, Mapping):
            parts = dict(value)
        else:
            try:
                parts = dict(p.split("=", 1) for p in str(value).split("/"))
            except ValueError:
                raise ConfigError(f"setting {value!r}: expected 'dim=64/granularity=note/strategy=exact'")
        unknown = set(parts) - {"dim", "granularity", "strategy", "version"}
        if unknown:
            raise ConfigError(f"setting {value!r}: unknown field(s) {sorted(unknown)}")
        dim = parts.get("dim")
        dim = None if dim in (None, "full", "None") else int(dim)
        version = parts.get("version")
        return cls(dim, str(parts.get("granularity", "note")), str(parts.get("strategy", "exact")),
                   None if version in (None, "") else str(version))


@dataclass
class QueueConfig:
    """How the label queue is built and handed out."""

    k: int = 10  # cut-off the app shows: top-k membership defines agreement and disagreement
    boundary_window: int = 3  # ranks k-w .. k+w-1 (0-based) count as near the decision boundary
    random_per_query: int = 5  # deeper candidates drawn at random per query (reserved within the cap)
    max_tasks_per_query: int | None = 20  # per query: the highest-priority pairs plus the random draws
    overlap: float = 0.2  # share of tasks graded by several annotators (agreement statistics)
    overlap_annotators: int = 2  # annotators per overlap task
    overlap_first: int = 20  # the first tasks handed out per campaign go to overlap_annotators too (0: off)
    lease_s: float = 600.0  # how long a handed-out task stays reserved for its annotator
    score_threshold: float | None = None  # with (id, score) lists: scores this close count as boundary
    score_margin: float = 0.02  # |score - score_threshold| <= margin is "near the decision boundary"
    few_grades_bonus: float = 1.0  # hand-out priority += bonus / (1 + grades the query has)
    seed: int = 0  # makes overlap and random draws reproducible
    source_priority: dict[str, float] = field(
        default_factory=lambda: {"disagreement": 3.0, "boundary": 2.0, "random": 1.5, "agreed": 1.0}
    )  # base priority of each source (random above agreed: deep grades teach RL more, see above)

    def validate(self) -> "QueueConfig":
        if self.k < 1 or self.boundary_window < 0 or self.random_per_query < 0:
            raise ConfigError("QueueConfig: k >= 1, boundary_window >= 0, random_per_query >= 0")
        if not 0.0 <= self.overlap <= 1.0:
            raise ConfigError(f"QueueConfig.overlap must be in [0, 1], got {self.overlap}")
        if self.overlap_annotators < 2:
            raise ConfigError("QueueConfig.overlap_annotators must be >= 2")
        if self.overlap_first < 0:
            raise ConfigError(f"QueueConfig.overlap_first must be >= 0, got {self.overlap_first}")
        if self.lease_s <= 0:
            raise ConfigError("QueueConfig.lease_s must be > 0")
        missing = set(SOURCES) - set(self.source_priority)
        if missing:
            raise ConfigError(f"QueueConfig.source_priority lacks {sorted(missing)}")
        return self


@dataclass(frozen=True)
class PlannedTask:
    query_id: str
    candidate_id: str
    source: str
    priority: float
    required_annotations: int
    setting: Setting  # the setting the pair is shown with (its best rank)
    rank: int  # 0-based rank under ``setting``
    detail: dict[str, Any] = field(default_factory=dict)  # rank per setting key (None = absent)


def _unit(seed: int, *parts: str) -> float:
    digest = hashlib.sha256(":".join((str(seed),) + parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _source(ranks: dict[Setting, int | None], scores: list[float], cfg: QueueConfig) -> str | None:
    in_top = [r is not None and r < cfg.k for r in ranks.values()]
    if any(in_top) and not all(in_top):
        return "disagreement"
    lo, hi = cfg.k - cfg.boundary_window, cfg.k + cfg.boundary_window
    if any(r is not None and lo <= r < hi for r in ranks.values()):
        return "boundary"
    if cfg.score_threshold is not None and any(
        abs(x - cfg.score_threshold) <= cfg.score_margin for x in scores
    ):
        return "boundary"
    if all(in_top):
        return "agreed"
    return None


def plan_tasks(
    neighbours: Mapping[Any, Mapping[str, Sequence[str]]], config: QueueConfig | None = None
) -> list[PlannedTask]:
    """Turn neighbour lists into deduplicated, prioritised tasks (highest priority first)."""
    cfg = (config or QueueConfig()).validate()
    lists = {Setting.parse(s): q for s, q in neighbours.items()}
    queries = sorted({q for per_query in lists.values() for q in per_query})
    planned: list[PlannedTask] = []
    for q in queries:
        ranks: dict[str, dict[Setting, int | None]] = {}
        scores: dict[str, list[float]] = {}
        for setting, per_query in lists.items():
            for rank, item in enumerate(per_query.get(q, ())):
                pair = isinstance(item, (tuple, list))
                c, score = (str(item[0]), float(item[1])) if pair else (str(item), None)
                if c != q:
                    ranks.setdefault(c, {s: None for s in lists})
                    if ranks[c][setting] is None:
                        ranks[c][setting] = rank
                    if score is not None:
                        scores.setdefault(c, []).append(score)
        chosen, deeper = [], []
        for c, per_setting in ranks.items():
            source = _source(per_setting, scores.get(c, []), cfg)
            (chosen if source else deeper).append((c, source, per_setting))
        deeper.sort(key=lambda item: _unit(cfg.seed, "random", q, item[0]))
        cap = cfg.max_tasks_per_query
        n_random = min(cfg.random_per_query, cap) if cap else cfg.random_per_query
        tasks = sorted((_make_task(q, c, src, r, cfg) for c, src, r in chosen),
                       key=lambda t: (-t.priority, t.rank, t.candidate_id))
        drawn = [_make_task(q, c, "random", r, cfg) for c, _, r in deeper[:n_random]]
        planned += (tasks[: cap - len(drawn)] if cap else tasks) + drawn
    planned.sort(key=lambda t: (-t.priority, t.query_id, t.rank))
    return planned


def _make_task(q: str, c: str, source: str, per_setting: dict, cfg: QueueConfig) -> PlannedTask:
    present = [(r, s) for s, r in per_setting.items() if r is not None]
    rank, setting = min(present, key=lambda rs: (rs[0], rs[1].key))
    overlap = _unit(cfg.seed, "overlap", q, c) < cfg.overlap
    return PlannedTask(
        query_id=q, candidate_id=c, source=source,
        priority=cfg.source_priority[source] - rank * 1e-3,  # within a source, better ranks first
        required_annotations=cfg.overlap_annotators if overlap else 1,
        setting=setting, rank=rank, detail={s.key: r for s, r in per_setting.items()},
    )  # fmt: skip


QUERY_SELECTIONS = ("random", "coverage")


def choose_queries(vectors, ids: Sequence[str], n: int, method: str = "random", seed: int = 0,
                   iterations: int = 20) -> list[str]:
    """Which notes to grade neighbours for: every id once, the first ``n`` chosen by ``method``.

    ``random``: a seeded permutation. ``coverage``: spherical k-means (k-means++ seeding) with
    ``n`` centres on the unit note vectors; the member nearest each centre comes first, larger
    clusters first, so every prefix covers the densest regions and no region of the catalogue goes
    ungraded; the other notes follow in random order (for refills past ``n``). On the fashion
    catalogue ``coverage`` did not beat ``random`` for RL (docs/results/rl.md, "Tried and not adopted").
    """
    import numpy as np

    if method not in QUERY_SELECTIONS:
        raise ConfigError(f"query selection {method!r}: expected one of {QUERY_SELECTIONS}")
    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(len(ids))]
    n = max(0, min(n, len(ids)))
    if method == "random" or n == 0:
        return [ids[i] for i in order]
    x = np.asarray(vectors, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    first = int(rng.integers(len(x)))  # k-means++ seeding: spread centres, D^2-weighted
    centres, dist = [x[first]], 1.0 - x @ x[first]
    for _ in range(n - 1):
        weight = np.maximum(dist, 0.0) ** 2
        pick = int(rng.choice(len(x), p=weight / weight.sum())) if weight.sum() > 0 else int(rng.integers(len(x)))
        centres.append(x[pick])
        dist = np.minimum(dist, 1.0 - x @ x[pick])
    centres = np.stack(centres)
    for _ in range(iterations):
        assign = np.argmax(x @ centres.T, axis=1)  # spherical k-means: cosine to unit centres
        sums = np.zeros_like(centres)
        np.add.at(sums, assign, x)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        empty = norms[:, 0] == 0
        centres = np.where(empty[:, None], centres, sums / np.maximum(norms, 1e-12))
    sims = x @ centres.T
    assign = np.argmax(sims, axis=1)
    sizes = np.bincount(assign, minlength=n)
    picked = []
    for c in sorted(range(n), key=lambda c: (-sizes[c], c)):
        members = np.flatnonzero(assign == c)
        if len(members):
            picked.append(int(members[np.argmax(sims[members, c])]))
    chosen = set(picked)
    return [ids[i] for i in picked] + [ids[i] for i in order if i not in chosen]
