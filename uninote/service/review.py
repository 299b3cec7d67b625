"""The service's review methods: guidelines, one's own past grades, agreement, disagreements and
adjudication. Mixed into ``UniNoteService``; thin calls into ``annotations`` (plain values out)."""

from __future__ import annotations

from typing import Any

from annotations.agreement import agreement_report, disagreements
from annotations.guidelines import load_guidelines
from uninote.errors import UniNoteError


class ReviewMethods:
    """Review methods of ``UniNoteService`` (``self.store`` and ``self.config`` come from it)."""

    def guidelines(self) -> str:
        """What each grade means, with an example (Markdown): ``config.guidelines`` or the default."""
        return load_guidelines(self.config.guidelines)

    def my_grades(self, annotator: str, limit: int = 200) -> list:
        """The annotator's own current grades, newest change first (to review and change them)."""
        self._require_annotator(annotator)
        mine = self.store.judgments(annotator=annotator)
        return sorted(mine, key=lambda j: (j.updated_at, j.id), reverse=True)[:limit]

    def change_grade(self, annotator: str, query_id: str, candidate_id: str, grade: int,
                     comment: str | None = None):
        """Change one of the annotator's own earlier grades (and its comment when given)."""
        self._require_annotator(annotator)
        return self.store.change_grade(annotator, query_id, candidate_id, grade, comment)

    def agreement(self) -> dict[str, Any]:
        """Krippendorff's alpha and pairwise kappa over the current grades, with the reason for
        each figure that cannot be shown yet (``annotations.agreement.agreement_report``)."""
        return agreement_report(self.store.judgments())

    def disagreements(self, min_spread: int = 2) -> list[dict[str, Any]]:
        """Pairs whose annotators' grades differ by ``min_spread`` or more, with any adjudication."""
        return disagreements(self.store.judgments(), self.store.adjudicated_grades(), min_spread)

    def can_adjudicate(self, annotator: str | None) -> bool:
        """Whether ``annotator`` may adjudicate: a named reviewer, or anyone signed in when
        ``config.reviewers`` is empty."""
        return bool(annotator) and (not self.config.reviewers or annotator in self.config.reviewers)

    def adjudicate(self, reviewer: str, query_id: str, candidate_id: str, grade: int,
                   comment: str | None = None):
        """A reviewer's final grade for a disputed pair; the RL export uses it instead of the others."""
        self._require_annotator(reviewer)
        if not self.can_adjudicate(reviewer):
            raise UniNoteError(f"{reviewer} is not a reviewer: adjudication is for "
                               f"{', '.join(self.config.reviewers)} (UNINOTE_REVIEWERS)")
        return self.store.adjudicate(reviewer, query_id, candidate_id, grade, comment)
