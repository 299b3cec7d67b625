"""Review: a reviewer's final grade for a disputed pair (adjudication), read back for the export.

Mixed into ``AnnotationStore``. One adjudication per (query, candidate); deciding again replaces
it. ``annotations.export`` and ``uninote.train.rl_data`` use the adjudicated grade instead of the
annotators' grades for that pair; the annotators' own grades stay as they are (agreement
statistics are computed from them, not from the reviewer's decision).
"""

from __future__ import annotations

import json
import time

from sqlalchemy import select

from annotations.errors import InvalidGrade, UnknownNote
from annotations.grades import annotator_id, clean_annotator, clean_grade
from annotations.models import AdjudicationRow, AnnotatorRow, JudgmentRow, NoteRow
from annotations.types import Adjudication


def _to_adjudication(row: AdjudicationRow, reviewer: str) -> Adjudication:
    return Adjudication(
        query_id=row.query_id, candidate_id=row.candidate_id, reviewer=reviewer, grade=row.grade,
        comment=row.comment, grades=json.loads(row.grades_json or "{}"), created_at=row.created_at,
        updated_at=row.updated_at,
    )  # fmt: skip


class ReviewMixin:
    """Adjudication methods of ``AnnotationStore``."""

    def adjudicate(self, reviewer: str, query_id: str, candidate_id: str, grade: int,
                   comment: str | None = None) -> Adjudication:
        """Record ``reviewer``'s final grade (0-3) for a pair at least one annotator graded.

        Replaces an earlier adjudication of the pair. Raises ``InvalidGrade`` (nothing stored)
        for a grade outside 0-3, an empty reviewer name, or a pair nobody graded.
        """
        name = clean_annotator(reviewer)
        value = clean_grade(grade)
        query_id, candidate_id = str(query_id), str(candidate_id)
        with self._db.write() as session:
            for note_id in (query_id, candidate_id):
                if session.get(NoteRow, note_id) is None:
                    raise UnknownNote(f"unknown note id {note_id!r}")
            graded = dict(session.execute(
                select(AnnotatorRow.name, JudgmentRow.grade)
                .join(AnnotatorRow, AnnotatorRow.id == JudgmentRow.annotator_id)
                .where(JudgmentRow.query_id == query_id, JudgmentRow.candidate_id == candidate_id)
            ).all())  # fmt: skip
            if not graded:
                raise InvalidGrade(f"nobody graded ({query_id}, {candidate_id}): there is nothing to adjudicate")
            rid, now = annotator_id(session, name), time.time()
            row = session.execute(select(AdjudicationRow).where(
                AdjudicationRow.query_id == query_id, AdjudicationRow.candidate_id == candidate_id)
            ).scalar_one_or_none()  # fmt: skip
            if row is None:
                row = AdjudicationRow(query_id=query_id, candidate_id=candidate_id, created_at=now)
                session.add(row)
            row.reviewer_id, row.grade, row.comment, row.updated_at = rid, value, comment or None, now
            row.grades_json = json.dumps(graded, sort_keys=True)
            session.flush()
            return _to_adjudication(row, name)

    def adjudications(self) -> list[Adjudication]:
        """Every adjudication, oldest first."""
        stmt = (select(AdjudicationRow, AnnotatorRow.name)
                .join(AnnotatorRow, AnnotatorRow.id == AdjudicationRow.reviewer_id)
                .order_by(AdjudicationRow.id))  # fmt: skip
        with self._db.read() as session:
            return [_to_adjudication(r, n) for r, n in session.execute(stmt)]

    def adjudicated_grades(self) -> dict[tuple[str, str], int]:
        """(query, candidate) -> the reviewer's grade, for the export and RL data."""
        return {(a.query_id, a.candidate_id): a.grade for a in self.adjudications()}
