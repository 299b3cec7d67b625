"""A first version on part of a big corpus, served at once; the rest added in the background.

On Spaces the corpus is the Hub copy of the catalogue (about 44k items): embedding all of it
before the first search would keep a visitor waiting for the whole corpus. So a first run on a
corpus of more than ``config.first_build_notes`` notes builds its version on the corpus's first
that many notes (``first_build_corpus``: in corpus order, with the pairs and qrels among them; the
first-run SFT trains on them too) and serves it as soon as it is written. The version folder then
holds ``completion.json`` (how many notes of how many, ``done``), and a background thread
(``CompletionMethods``) embeds the remaining notes ``config.completion_notes`` at a time, with the
version's own model:

- each step is appended to the version's ``embeddings/`` as one more shard
  (``EmbeddingWriter.append_to``: the folder is complete after every step), then the served
  version is swapped for one whose retriever covers the new notes (same settings, the same tables
  and ANN indexes built: ``Retriever.rebuilt``), under the swap lock, so searches and grading go
  on throughout and a search that took the old reference finishes on it;
- the status line and ``completion()`` say how many notes are searchable, the percent and the
  time left (``CompletionProgress``);
- a crash or restart loses no step already appended: the next start serves the folder's
  embeddings as they are (its saved ``index/`` covers the first build only, so the retriever is
  built from the shards) and continues with the notes they lack;
- when every note is in, ``index/`` is rewritten for the whole corpus (written aside, then
  renamed), ``completion.json`` says done, the map layouts made on the subset are dropped and
  the version is evaluated (``evaluate_served`` waits for the whole corpus).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from uninote.embedding_store import EmbeddingWriter
from uninote.embeddings import NoteEmbeddings
from uninote.fileio import atomic_write
from uninote.service.folders import COMPLETION_FILE, completion_pending, read_json
from uninote.service.progress import CompletionProgress

log = logging.getLogger("uninote.service")


def first_build_corpus(corpus, n_notes: int):
    """The first ``n_notes`` notes of ``corpus`` with the pairs and qrels among them (the corpus
    itself when it has at most that many, or ``n_notes`` is 0)."""
    if not n_notes or len(corpus) <= n_notes:
        return corpus
    notes = corpus.notes[:n_notes]
    keep = {n.note_id for n in notes}
    pairs = [dataclasses.replace(p, negative_ids=[x for x in p.negative_ids if x in keep])
             for p in corpus.pairs if p.query_id in keep and p.positive_id in keep]
    qrels = {q: {c: g for c, g in grades.items() if c in keep} for q, grades in corpus.qrels.items() if q in keep}
    return dataclasses.replace(corpus, notes=notes, pairs=pairs, qrels={q: g for q, g in qrels.items() if g})


def completion_record(subset, corpus) -> bytes:
    """``completion.json`` of a version built on ``subset`` of ``corpus``."""
    return json.dumps({"first_build_notes": len(subset), "corpus_notes": len(corpus), "done": False,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2).encode()


def embed_notes(model, corpus) -> NoteEmbeddings:
    """Embeddings of a completion step. UniNote models skip the feature cache (these features are
    used once; caching 40k photos' region features would fill the Space's disk)."""
    from uninote.model import UniNoteModel

    if isinstance(model, UniNoteModel):
        from uninote.model.features import corpus_features, embed_from_features

        feats = corpus_features(corpus, model, progress=True, use_cache=False)
        return embed_from_features(model, feats, progress=False)
    return model.embed_corpus(corpus, progress=True)


class CompletionMethods:
    """Background completion of a version built on part of the corpus (mixed into ``UniNoteService``)."""

    _completion_thread: threading.Thread | None = None
    _completion_progress: CompletionProgress | None = None
    _completion_version: str | None = None

    def _init_completion(self) -> None:
        self._completion_stop = threading.Event()
        self._completion_lock = threading.Lock()

    @property
    def completing(self) -> bool:
        """True while notes of the corpus are being added to the served version."""
        t = self._completion_thread
        return t is not None and t.is_alive()

    def completion(self) -> CompletionProgress | None:
        """How far adding the rest of the corpus to the served version is (None: it has it all)."""
        served = self._served
        if served is None or served.version != self._completion_version:
            return None
        return self._completion_progress

    def wait_completed(self, timeout: float | None = None) -> bool:
        """Wait for the background completion (True when none runs any more)."""
        t = self._completion_thread
        if t is not None:
            t.join(timeout)
        return not self.completing

    def _start_completion(self) -> None:
        """Start adding the corpus notes the served version lacks, if it was built on a subset."""
        served = self._served
        if served is None or not completion_pending(served.path):
            return
        if getattr(self.config, "index_uri", ""):  # its Milvus collections would miss the added notes
            log.warning("version %s holds %d of %d notes; with UNINOTE_INDEX_URI the rest is not added "
                        "(build the version on the whole corpus: UNINOTE_FIRST_BUILD_NOTES=0)",
                        served.version, len(served.embeddings), len(self.corpus))
            return
        with self._completion_lock:
            if self.completing:
                return
            self._completion_stop.clear()
            self._completion_version = served.version
            self._completion_progress = CompletionProgress(len(served.embeddings), len(self.corpus), None)
            self._completion_thread = threading.Thread(target=self._complete_safely, args=(served,),
                                                       name="uninote-complete", daemon=True)
            self._completion_thread.start()

    def _stop_completion(self, timeout: float | None = 60) -> None:
        """Stop after the step being embedded (it is appended first; nothing is lost)."""
        self._completion_stop.set()
        t = self._completion_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _complete_safely(self, served) -> None:
        try:
            self._complete(served)
        except Exception as exc:  # the served version keeps what it has; the next start resumes
            log.exception("adding the rest of the corpus failed")
            p = self._completion_progress
            self._completion_progress = dataclasses.replace(p, error=str(exc)) if p else None

    def _complete(self, served) -> None:
        folder, version = served.path, served.version
        emb_dir = folder / "embeddings"
        have = set(served.embeddings.note_ids)
        todo = [n for n in self.corpus.notes if n.note_id not in have]
        total, done = len(have) + len(todo), len(have)
        log.info("version %s holds %d of %d notes: adding %d in the background, %d per step",
                 version, done, total, len(todo), self.config.completion_notes)
        writer = EmbeddingWriter.append_to(emb_dir) if todo else None
        t0, added, step = time.perf_counter(), 0, self.config.completion_notes
        for start in range(0, len(todo), step):
            if self._completion_stop.is_set():
                return
            part = dataclasses.replace(self.corpus, notes=todo[start:start + step], pairs=[], qrels={})
            writer.write(embed_notes(served.model, part))
            added += len(part)
            rate = added / max(time.perf_counter() - t0, 1e-9)
            served = self._swap_completed(served, emb_dir)
            self._completion_progress = CompletionProgress(done + added, total, (len(todo) - added) / rate)
        self._finish_completion(served, total)

    def _swap_completed(self, served, emb_dir: Path):
        """Serve the folder's embeddings as they are now (if ``served`` is still what is served)."""
        emb = NoteEmbeddings.load(emb_dir)
        current = self._served
        base = current if current is not None and current.version == served.version else served
        fresh = dataclasses.replace(served, embeddings=emb, retriever=base.retriever.rebuilt(emb))
        with self._swap_lock:
            if self._served is not None and self._served.version == served.version:
                self._served = fresh
        return fresh

    def _finish_completion(self, served, total: int) -> None:
        """Index for the whole corpus written beside the old one, then renamed; completion.json done."""
        folder = served.path
        tmp, old = folder / f".index-{os.getpid()}", folder / ".index-old"
        for p in (tmp, old):
            shutil.rmtree(p, ignore_errors=True)
        served.retriever.save(tmp)
        if (folder / "index").exists():
            (folder / "index").rename(old)
        tmp.rename(folder / "index")
        shutil.rmtree(old, ignore_errors=True)
        state = read_json(folder / COMPLETION_FILE)
        state.update(done=True, notes=len(served.embeddings),
                     finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        atomic_write(folder / COMPLETION_FILE, json.dumps(state, indent=2).encode())
        shutil.rmtree(folder / "umap", ignore_errors=True)  # layouts of the subset; remade on demand
        self._completion_progress = None
        log.info("version %s now holds all %d notes", served.version, total)
        self._set_status(self.status)
        if self._served is not None and self._served.version == served.version:
            try:
                self.evaluate_served()
            except Exception:
                log.exception("evaluation after completion failed")
