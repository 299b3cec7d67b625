"""The service's search methods: corpus notes and their thumbnails, catalogue word search,
neighbours of a note or an upload, side by side (two settings or two model versions) and uploads.
Mixed into ``UniNoteService`` (``self.corpus``, ``self.served``, ``self._compared`` come from it)."""

from __future__ import annotations

import time
from pathlib import Path

from uninote.data.note import Note
from uninote.errors import UniNoteError
from uninote.service.catalogue import Catalogue, CatalogueMatches
from uninote.service.checks import search_settings
from uninote.service.compare import queue_union, served_dims, upload_vectors
from uninote.service.config import MAX_UPLOAD_PHOTOS
from uninote.service.media import make_thumbnail, save_upload, thumbnail_path
from uninote.service.types import Comparison, Neighbour, SearchResult, ServedVersion, UploadedQuery

# Versions above this many notes are searched with adaptive by default (Explore) and their label
# queues planned with it: a full-dim exact scan of a million mapped float16 vectors takes seconds.
EXACT_MAX_NOTES = 200_000


class SearchMethods:
    """Search methods of ``UniNoteService``."""

    # --- notes, thumbnails --------------------------------------------------------------------------
    def note(self, note_id: str) -> Note:
        if note_id not in self.corpus:
            raise UniNoteError(f"no note with id {note_id!r} in corpus {self.corpus.name}")
        return self.corpus.get(note_id)

    def find_notes(self, text: str = "", limit: int = 48) -> list[Note]:
        """The first ``limit`` notes whose words match every word of ``text`` (see ``search_catalogue``)."""
        return self.search_catalogue(text, limit).notes

    def search_catalogue(self, text: str = "", limit: int = 48) -> CatalogueMatches:
        """Catalogue search by words (id, title, tags, metadata): whole words first, then words
        that start with a typed word; never a word inside another ("shirt" is not "sweatshirt").
        Also says how many notes match in all."""
        corpus = self.corpus
        if self._catalogue is None or self._catalogue[0] is not corpus:  # built once per corpus
            self._catalogue = (corpus, Catalogue(corpus.notes, getattr(corpus, "word_index", None)))
        return self._catalogue[1].find(text, limit)

    def _thumb_path(self, note: Note) -> Path:
        return thumbnail_path(self.config.thumbs_dir, self.corpus.name, note.images[0])

    def thumbnail(self, note_id: str) -> str | None:
        """Path of a small JPEG of the note's first photo (made once per photo, under thumbs/)."""
        note = self.note(note_id)
        if not note.images:
            return None
        path = self._thumb_path(note)
        if not path.exists():
            make_thumbnail(self.corpus.image_path(note, 0), path, self.config.thumb_size)
        return str(path) if path.exists() else None

    def thumbnail_if_cached(self, note_id: str) -> str | None:
        note = self.note(note_id)
        path = self._thumb_path(note) if note.images else None
        return str(path) if path is not None and path.exists() else None

    # --- search -----------------------------------------------------------------------------------
    def neighbours(self, query: str | UploadedQuery, k: int = 12, dim: int | None = None,
                   granularity: str = "note", modality: str = "note",
                   strategy: str = "exact", version: str | None = None) -> SearchResult:
        """Top-k neighbours of a corpus note (by id) or an upload, with thumbnails and latency,
        under the served version or (side by side) another ``version`` loaded beside it."""
        served = self._searched(version)  # one reference for the whole search, even across a switch
        k, dim = search_settings(k, dim, served_dims(served), granularity, modality, strategy)
        t0 = time.perf_counter()
        if isinstance(query, UploadedQuery):
            q, exclude = upload_vectors(served, query), False
        else:
            self.note(query)
            adding = self.completion() if served is self._served else None
            if adding is not None and query not in served.retriever:
                raise UniNoteError(f"note {query!r} is not searchable yet: {adding.describe()}")
            q, exclude = query, True
        hits = served.retriever.search(q, k=k, dim=dim, granularity=granularity, strategy=strategy,
                                       modality=modality, exclude_self=exclude)
        latency = (time.perf_counter() - t0) * 1000
        rows = [Neighbour(h.note_id, int(h.rank), float(h.score), self.corpus.get(h.note_id).title,
                          self.thumbnail(h.note_id)) for h in hits]
        settings = dict(k=k, dim=dim, granularity=granularity, modality=modality, strategy=strategy)
        return SearchResult(rows, latency, served.version, settings,
                            served.retriever.indexes_for(granularity, strategy))

    def compare(self, query: str | UploadedQuery, left: dict, right: dict) -> Comparison:
        """Side by side: ``query`` searched with each side's ``neighbours`` settings (k, dim,
        granularity, modality, strategy, version); ``.overlap`` is overlap@k."""
        return Comparison(self.neighbours(query, **left), self.neighbours(query, **right))

    def queue_comparison(self, query_id: str, left: dict, right: dict) -> dict[str, int]:
        """Send the union of both sides' top-k lists for a corpus note to the label queue:
        pairs only one side finds are planned as disagreements (graded first), pairs both find
        as agreed. Returns ``{"pairs", "added", "existing"}`` (existing: already queued)."""
        if not isinstance(query_id, str):
            raise UniNoteError("uploads are not in the annotation store: open a catalogue note to "
                               "send its lists to annotators")
        return queue_union(self.queue, query_id, self.compare(query_id, left, right), self.served.version)

    def _searched(self, version: str | None) -> ServedVersion:
        """The served version, or ``version`` loaded beside it (one compared version at a time)."""
        served = self.served
        if version in (None, "", served.version):
            return served
        return self._compared.get(version)

    def default_strategy(self) -> str:
        """The search strategy Explore starts with: ``exact``, or ``adaptive`` for a version of
        more than ``EXACT_MAX_NOTES`` notes (the 64-d shortlist re-ranked at the searched dim)."""
        return "exact" if len(self.served.embeddings) <= EXACT_MAX_NOTES else "adaptive"

    def dims(self, version: str | None = None) -> list[int]:
        """Dims the served model (or ``version``) is trained to work at (Matryoshka prefixes)."""
        return served_dims(self._searched(version))

    # --- uploads ----------------------------------------------------------------------------------
    def encode_upload(self, photos: list[bytes], title: str = "", body: str = "",
                      names: list[str] | None = None) -> UploadedQuery:
        """Validate every photo, store them, and embed the upload as a query.

        Raises ``ImageError`` naming the bad photo (and its file name, given ``names``); nothing
        is stored unless all photos pass.
        """
        cfg = self.config
        digest, paths = save_upload(photos, title, body, cfg.uploads_dir, MAX_UPLOAD_PHOTOS,
                                    cfg.max_upload_bytes, cfg.max_upload_pixels, names)
        note = Note(note_id=f"upload:{digest}", title=title.strip(), body=body.strip(), images=paths)
        served = self.served
        embedding = served.model.encode_query(note, None)
        return UploadedQuery(note.note_id, paths, note.title, note.body, embedding, served.version)
