"""A corpus: notes plus optional graded relevance (qrels) and training pairs.

Native folder layout (a format anyone can produce without our code):

    notes.jsonl   one JSON object per line:
                  {"note_id": str, "title": str, "body": str, "tags": [str],
                   "images": [relative paths], "meta": {...}}
    images/...    files referenced by "images"
    qrels.tsv     optional; header "query_id<TAB>note_id<TAB>grade", integer grades 0-3
    pairs.jsonl   optional; {"query_id": str, "positive_id": str, "negative_ids": [str]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from uninote.data.note import Note


@dataclass
class Pair:
    query_id: str
    positive_id: str
    negative_ids: list[str] = field(default_factory=list)


@dataclass
class Corpus:
    root: Path
    notes: list[Note]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    name: str = ""

    def __post_init__(self):
        self.root = Path(self.root)
        self._index = {n.note_id: i for i, n in enumerate(self.notes)}
        if not self.name:
            self.name = self.root.name

    def __len__(self) -> int:
        return len(self.notes)

    def __iter__(self):
        return iter(self.notes)

    def __contains__(self, note_id: str) -> bool:
        return note_id in self._index

    def index_of(self, note_id: str) -> int:
        return self._index[note_id]

    def get(self, note_id: str) -> Note:
        return self.notes[self._index[note_id]]

    def image_path(self, note: Note, i: int = 0) -> Path:
        p = Path(note.images[i])
        return p if p.is_absolute() else self.root / p
