"""Notes known to the store: corpus notes by id and content hash, uploads with their photos.

Uploaded photos are stored content-addressed (``images/<sha[:2]>/<sha>.<ext>`` beside the
database, written atomically), their note's JSON in the ``notes`` table, so an upload stays
gradeable and searchable after a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

from sqlalchemy import insert, select, update

from annotations.errors import AnnotationError
from annotations.models import NoteRow, SchemaInfo
from uninote.data.images import DEFAULT_MAX_BYTES, check_image_bytes, sniff_format
from uninote.data.note import Note
from uninote.errors import ImageError

UPLOAD_CORPUS = "uploads"
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}


def content_hash(note: Note) -> str:
    """sha256 of the note's title, body, tags and image list (canonical JSON)."""
    payload = {"title": note.title, "body": note.body, "tags": list(note.tags),
               "images": [str(i) for i in note.images]}  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _check_image(i: int, data: bytes) -> str:
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ImageError(f"upload image {i + 1}: empty or not bytes")
    if len(data) > DEFAULT_MAX_BYTES:
        raise ImageError(f"upload image {i + 1}: {len(data):,} bytes, over {DEFAULT_MAX_BYTES:,}")
    problem = check_image_bytes(bytes(data))
    if problem:
        raise ImageError(f"upload image {i + 1}: {problem}")
    fmt = sniff_format(bytes(data[:16])) or "JPEG"
    return _EXT.get(fmt, "img")


class NotesMixin:
    """Note methods of ``AnnotationStore``."""

    def register_notes(self, corpus: str, notes: Iterable[Note]) -> dict[str, int]:
        """Record ``notes`` of ``corpus`` by id and content hash so grades can point at them.

        Idempotent; a note whose content changed gets its new hash. Returns counts
        ``{"added", "updated", "unchanged"}``. One transaction: all notes or none.
        """
        if not corpus:
            raise AnnotationError("corpus name is empty")
        wanted: dict[str, str] = {}
        for note in notes:
            if not note.note_id:
                raise AnnotationError(f"corpus {corpus!r}: a note has an empty note_id")
            wanted[str(note.note_id)] = content_hash(note)
        counts = {"added": 0, "updated": 0, "unchanged": 0}
        now = time.time()
        ids = list(wanted)
        table = NoteRow.__table__
        with self._db.write() as session:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                existing = {r.note_id: (r.content_hash, r.corpus) for r in session.execute(
                    select(table.c.note_id, table.c.content_hash, table.c.corpus)
                    .where(table.c.note_id.in_(chunk)))}  # fmt: skip
                added, changed = [], []
                for note_id in chunk:
                    row = existing.get(note_id)
                    if row is None:
                        added.append({"note_id": note_id, "corpus": corpus, "content_hash": wanted[note_id],
                                      "uploaded": False, "created_at": now, "updated_at": now})
                    elif row != (wanted[note_id], corpus):
                        changed.append({"id": note_id, "content_hash": wanted[note_id], "corpus": corpus,
                                        "updated_at": now})
                if added:
                    session.execute(insert(table), added)
                for row in changed:
                    session.execute(update(table).where(table.c.note_id == row["id"]).values(
                        content_hash=row["content_hash"], corpus=row["corpus"], updated_at=now))
                counts["added"] += len(added)
                counts["updated"] += len(changed)
                counts["unchanged"] += len(chunk) - len(added) - len(changed)
        return counts

    def register_corpus(self, corpus: str, notes: Iterable[Note], fingerprint: str | None = None) -> dict[str, int] | None:
        """``register_notes``, once per ``fingerprint`` of the corpus (e.g. a big corpus's index
        key, ``uninote.data.lazy``): recorded in ``schema_info`` afterwards, and skipped (None)
        while the recorded one matches, so a restart does not hash and look up every note again.
        Without a fingerprint every call registers."""
        if not fingerprint:
            return self.register_notes(corpus, notes)
        key = f"notes_registered:{hashlib.sha256(corpus.encode()).hexdigest()[:32]}"
        with self._db.read() as session:
            done = session.execute(select(SchemaInfo.value).where(SchemaInfo.key == key)).scalar_one_or_none()
        if done == fingerprint:
            return None
        counts = self.register_notes(corpus, notes)
        with self._db.write() as session:
            row = session.get(SchemaInfo, key)
            if row is None:
                session.add(SchemaInfo(key=key, value=fingerprint))
            else:
                row.value = fingerprint
        return counts

    def has_note(self, note_id: str) -> bool:
        """Whether ``note_id`` is registered (corpus note or upload)."""
        with self._db.read() as session:
            return session.get(NoteRow, str(note_id)) is not None

    def note_ids(self, corpus: str | None = None) -> list[str]:
        """Registered note ids, optionally of one corpus."""
        stmt = select(NoteRow.note_id).order_by(NoteRow.note_id)
        if corpus is not None:
            stmt = stmt.where(NoteRow.corpus == corpus)
        with self._db.read() as session:
            return list(session.execute(stmt).scalars())

    def corpus_names(self, note_ids: Iterable[str]) -> list[str]:
        """Sorted names of the corpora these notes were registered under (uploads left out)."""
        ids, names = sorted(set(note_ids)), set()
        with self._db.read() as session:
            for start in range(0, len(ids), 500):
                stmt = select(NoteRow.corpus).distinct().where(
                    NoteRow.note_id.in_(ids[start:start + 500]), NoteRow.uploaded.is_(False))
                names.update(session.execute(stmt).scalars())
        return sorted(n for n in names if n)

    def add_uploaded_note(self, note: Note, image_bytes: list[bytes]) -> Note:
        """Store an uploaded note and its photos; returns it with absolute image paths.

        Photos are validated (``ImageError`` for empty, corrupt, oversize or unknown formats) and
        written content-addressed under ``images_dir``; then the note row is committed. All or
        nothing: on any failure, photos this call created are removed and no row is written.
        An empty ``note_id`` becomes ``upload-<hash>``; re-uploading the same note is a no-op;
        an existing id with different content raises ``AnnotationError``.
        """
        exts = [_check_image(i, data) for i, data in enumerate(image_bytes)]
        names = [f"{hashlib.sha256(d).hexdigest()}.{e}" for d, e in zip(image_bytes, exts)]
        rel = [f"{n[:2]}/{n}" for n in names]
        stored = replace(note, images=rel, meta={**note.meta, "uploaded": True})
        digest = content_hash(stored)
        if not stored.note_id:
            stored = replace(stored, note_id=f"upload-{digest[:12]}")
        created: list[Path] = []
        with self._db._lock:  # no other thread may reference a photo we might remove on failure
            try:
                for rel_name, data in zip(rel, image_bytes):
                    path = self.images_dir / rel_name
                    if not path.exists():
                        _write_atomic(path, bytes(data))
                        created.append(path)
                self._insert_upload(stored, digest)
            except BaseException:
                for path in created:
                    path.unlink(missing_ok=True)
                raise
        return self._absolute(stored)

    def _insert_upload(self, note: Note, digest: str) -> None:
        now = time.time()
        with self._db.write() as session:
            row = session.get(NoteRow, note.note_id)
            if row is not None:
                if row.content_hash == digest:
                    return
                raise AnnotationError(f"note id {note.note_id!r} already exists with other content")
            session.add(NoteRow(note_id=note.note_id, corpus=UPLOAD_CORPUS, content_hash=digest,
                                uploaded=True, note_json=json.dumps(note.to_json()),
                                created_at=now, updated_at=now))  # fmt: skip

    def _absolute(self, note: Note) -> Note:
        return replace(note, images=[str(self.images_dir / p) for p in note.images])

    def uploaded_notes(self) -> list[Note]:
        """Every uploaded note, oldest first, with absolute paths to its stored photos."""
        with self._db.read() as session:
            rows = session.execute(
                select(NoteRow.note_json).where(NoteRow.uploaded.is_(True)).order_by(NoteRow.created_at)
            ).scalars()
            return [self._absolute(Note.from_json(json.loads(text))) for text in rows]
