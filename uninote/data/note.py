"""The unit of retrieval: a note (photos, title, body, tags, free-form metadata)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Note:
    """A post: one or more photos plus title, body and tags.

    ``images`` are paths relative to the corpus root (absolute paths are allowed for notes that
    live outside a corpus, e.g. an upload). A note may have no images: it is then text-only.
    """

    note_id: str
    title: str = ""
    body: str = ""
    tags: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The text tower's input: title, body and hashtags in one string."""
        parts = [self.title.strip(), self.body.strip()]
        if self.tags:
            parts.append(" ".join(f"#{t}" for t in self.tags))
        return "\n".join(p for p in parts if p)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Note":
        return cls(
            note_id=str(obj["note_id"]),
            title=obj.get("title", "") or "",
            body=obj.get("body", "") or "",
            tags=list(obj.get("tags", []) or []),
            images=list(obj.get("images", []) or []),
            meta=dict(obj.get("meta", {}) or {}),
        )
