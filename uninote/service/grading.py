"""The service's grading methods: the label queue (planned from the active version's
neighbours), the next pair for an annotator, grades, undo, skip and the dashboard's counts.
Mixed into ``UniNoteService`` (``self.queue``, ``self.store``, ``self._served`` come from it)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from annotations.grades import clean_grade
from annotations.planning import choose_queries
from uninote.errors import UniNoteError

log = logging.getLogger("uninote.service")


class GradingMethods:
    """Grading methods of ``UniNoteService``."""

    def _fill_queue(self, k: int = 10) -> int:
        """Plan label tasks for up to ``config.label_queries`` notes that have not been queries yet:
        their neighbours under the *active* version at a small and the full dim, so disagreements
        between cheap and full retrieval get graded, 3k deep, so the queue's random source can draw
        notes the model ranks below the top-k. Refills re-plan from whatever version is active by
        then, so later grades go where the newest model is still wrong. Returns queries added."""
        served = self._served
        done = self.queue.queries()
        ids = [i for i in served.embeddings.note_ids if i not in done]
        if not ids:
            return 0
        # seeded by how many notes were queries already: the first fill is the same on every start
        sample = choose_queries(None, ids, 0, "random", seed=len(done))[: self.config.label_queries]
        small, strategy = self.dims()[0], self.default_strategy()
        lists: dict[str, dict[str, list[str]]] = {}
        for dim in sorted({small, served.embeddings.dim}):
            key = f"dim={dim}/granularity=note/strategy={strategy}"
            lists[key] = {q: [h.note_id for h in served.retriever.search(q, k=3 * k, dim=dim, strategy=strategy)]
                          for q in sample}
        log.info("planning label tasks for %d queries from %s", len(sample), served.version)
        self.queue.add_from_neighbours(lists, model_version=served.version)
        return len(sample)

    # --- annotation -------------------------------------------------------------------------------
    def next_pair(self, annotator: str) -> Any | None:
        """The next (query, candidate) task for this annotator, or None when the queue is empty."""
        self._require_annotator(annotator)
        self._require_ready()
        task = self.queue.next_task(annotator)
        if task is None:
            with self._fill_lock:  # one refill at a time; whoever waited finds the new tasks
                task = self.queue.next_task(annotator)
                if task is None and self._fill_queue():
                    task = self.queue.next_task(annotator)
        return task

    def grade(self, annotator: str, query_id: str, candidate_id: str, grade: int,
              context: dict | None = None, interactive: bool = False):
        """Save one grade (an integer 0-3: 2.7 is refused, never rounded) and return the stored judgment.

        ``interactive`` (a person at the keyboard): a grade sooner than ``config.min_view_s`` after
        the pair was shown, or changing it that soon after it was given, is refused (``TooSoon``)."""
        self._require_annotator(annotator)
        grade = clean_grade(grade)
        self.note(query_id), self.note(candidate_id)
        ctx = {k: v for k, v in (context or {}).items()
               if k in ("dim", "granularity", "strategy", "rank", "comment", "task_id")}
        if interactive:
            self.queue.check_not_too_soon(annotator, query_id, candidate_id, grade, ctx.get("task_id"),
                                          self.config.min_view_s)
        return self.store.submit_grade(annotator, query_id, candidate_id, grade,
                                       model_version=self._served.version if self._served else None,
                                       **ctx)

    def undo(self, annotator: str):
        self._require_annotator(annotator)
        return self.store.undo(annotator)

    def skip(self, annotator: str, task_id: int):
        self._require_annotator(annotator)
        return self.queue.skip(annotator, task_id)

    def annotator_stats(self, annotator: str):
        self._require_annotator(annotator)
        return self.store.annotator_stats(annotator)

    def queue_left(self, annotator: str) -> int | None:
        """Pairs still open for this annotator."""
        return self.queue.pending(annotator)

    def annotation_summary(self) -> dict:
        """Counts, grade distribution, per-annotator stats and agreement, for the dashboard."""
        judgments = self.store.judgments()
        by_pair: dict[tuple[str, str], list[int]] = {}
        for j in judgments:
            by_pair.setdefault((j.query_id, j.candidate_id), []).append(j.grade)
        multi = [g for g in by_pair.values() if len(g) > 1]
        exact = float(np.mean([len(set(g)) == 1 for g in multi])) if multi else None
        spread = float(np.mean([max(g) - min(g) for g in multi])) if multi else None
        return {
            "n_judgments": len(judgments), "n_pairs": len(by_pair), "n_multi": len(multi),
            "grades": {g: sum(j.grade == g for j in judgments) for g in range(4)},
            "annotators": [self.store.annotator_stats(a) for a in self.store.annotators()],
            "exact_agreement": exact, "mean_grade_spread": spread,
        }

    @staticmethod
    def _require_annotator(annotator: str | None) -> None:
        if not annotator:
            raise UniNoteError("sign in to grade: annotations need a logged-in annotator")
