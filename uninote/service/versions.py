"""The service's model version methods: build the first version, load and serve one, switch
versions under a lock, evaluate the served one, and queue the RL jobs that make new versions.
Mixed into ``UniNoteService`` (``self.store``, ``self.config``, ``self._served`` come from it)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from uninote.embedding_store import embed_to_disk
from uninote.errors import UniNoteError
from uninote.eval import evaluate
from uninote.fileio import atomic_write
from uninote.service.completion import completion_record, first_build_corpus
from uninote.service.folders import (COMPLETION_FILE, completion_pending, eval_file, load_version, make_model,
                                     read_json, resolve_path, sft_staging, stored_path, write_version)
from uninote.service.pages import file_groups, read_ahead, release_mapped, vector_ranges
from uninote.service.search import EXACT_MAX_NOTES
from uninote.service.types import ServedVersion

log = logging.getLogger("uninote.service")


def shortlist_table(served: ServedVersion) -> None:
    """Build (or load from ``<version>/cache/``) the note table at the adaptive shortlist dim.

    Built, it streams the whole mapped full-dim note table (1.5 GB of float16 at a million notes);
    the result (4 bytes per dim per note) is saved once beside the version, whose folder never
    changes once READY, and later opens read that instead. The mapped pages are handed back."""
    retriever = served.retriever
    dim = retriever.shortlist_dim
    if dim >= retriever.full_dim:  # adaptive is exact at full dim: nothing to build
        return
    path = Path(served.path) / "cache" / f"note-d{dim}-n{len(retriever.note_ids)}.npy"
    if path.is_file():
        try:
            retriever.set_table("note", dim, np.load(path, mmap_mode="r"))
            return
        except (ValueError, OSError) as exc:  # a stale or damaged copy: built again below
            log.warning("%s: %s; building the shortlist table again", path, exc)
    vectors = retriever.table("note", dim).vectors
    release_mapped(served)  # the pass mapped the whole note table: hand its pages back
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, vectors)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only version folder: built at every open, as before
        log.warning("could not keep the shortlist table in %s: %s", path.parent, exc)


class VersionMethods:
    """Version methods of ``UniNoteService``."""

    def _active_version_name(self) -> str | None:
        active = self.store.active_version()
        if active is not None and (self._folder(active.path) / "READY").exists():
            return active.version
        return None

    def _folder(self, stored: str) -> Path:
        return resolve_path(self.config.versions_root, stored)

    def _build_default_version(self) -> str:
        """First run: make the model named by ``config.model``, embed, index, write the folder.

        A corpus of more than ``config.first_build_notes`` notes: trained, embedded and indexed on
        its first that many (``first_build_corpus``); the rest is added once it is served
        (uninote/service/completion.py)."""
        spec = self.config.model
        subset = first_build_corpus(self.corpus, self.config.first_build_notes)
        part = "" if subset is self.corpus else f" (the first {len(subset):,} of {len(self.corpus):,} notes)"
        self._begin(("training the default SFT model" if spec == "default" else f"making the model ({spec})") + part)
        model = self._make_model(spec, subset)
        version = "baseline" if str(spec).startswith("baseline:") else model.version
        folder = self.config.versions_root / version
        if not (folder / "READY").exists():
            def embed(out: Path) -> None:  # streamed into the version folder, one shard at a time
                self._begin(f"embedding {len(subset):,} notes with {version}{part}")
                embed_to_disk(model, subset, out, model_version=version)
                self._begin(f"indexing {len(subset):,} notes and writing the version")
            extra = {} if subset is self.corpus else {COMPLETION_FILE: completion_record(subset, self.corpus)}
            self._write_version(folder, spec, model, embed, extra)
        self.store.register_model_version(version, stored_path(self.config.versions_root, folder),
                                          corpus=self.corpus_source, metrics=read_json(folder / "eval.json"))
        self.store.set_active_version(version)
        return version

    def _make_model(self, spec: str, corpus=None):
        return make_model(self.config, self.corpus if corpus is None else corpus, spec, self._set_status)

    def _write_version(self, folder: Path, spec: str, model, embeddings, extra: dict | None = None) -> None:
        """The version folder, through the one writer the RL worker uses too."""
        staging = sft_staging(self.config)  # train_sft's training config and metrics, kept
        files = [staging / "training_config.json", staging / "metrics.json"] if spec == "default" else []
        write_version(folder.parent, folder.name, model, embeddings, spec=spec, model_files=files,
                      extra_files=extra)
        if spec == "default":
            shutil.rmtree(staging.parent, ignore_errors=True)

    def _load_version(self, version: str) -> ServedVersion:
        if not self.ready:
            self._begin(f"loading model version {version}")
        served = load_version(version, self._version_path(version), self.config.index_uri)
        if len(served.retriever) > EXACT_MAX_NOTES:  # Explore searches it with adaptive: its shortlist now
            shortlist_table(served)
        # what searches read into the page cache, in the background: re-ranks read RAM, not disk
        threading.Thread(target=self._read_ahead, args=(served,), name="uninote-prefetch", daemon=True).start()
        return served

    def _read_ahead(self, served: ServedVersion) -> None:
        """Into the page cache, within one memory budget: the version's full-dim vectors, then the
        files a result page reads (a lazily read corpus's notes and index, the thumbnails)."""
        corpus, t0 = self.corpus, time.perf_counter()
        files = []
        if getattr(corpus, "index_dir", None) is not None:  # a LazyCorpus: notes.jsonl and its index
            files += [Path(corpus.root) / "notes.jsonl"] + sorted(Path(corpus.index_dir).glob("*.npy"))
        files += sorted(Path(self.config.thumbs_dir).rglob("*.jpg"))
        done = read_ahead(vector_ranges(served) + file_groups(files))
        if done:
            log.info("%s: %.2f GB of vectors, notes and thumbnails read into the page cache in %.1f s",
                     served.version, done / 1e9, time.perf_counter() - t0)

    def _version_path(self, version: str) -> Path:
        for v in self.store.list_model_versions():
            if v.version == version:
                return self._folder(v.path)
        return self.config.versions_root / version

    @property
    def served(self) -> ServedVersion:
        served = self._served
        if served is None:
            raise UniNoteError(f"the model is not ready yet ({self.status})")
        return served

    def activate(self, version: str) -> str:
        """Serve ``version`` from now on. Loads first, then swaps one reference under a lock."""
        new = self._compared.take(version) or self._load_version(version)
        with self._swap_lock:
            self._served = new
            self.store.set_active_version(version)
        self._set_status(self.status)
        self._start_completion()  # a version still missing notes of the corpus gets them added
        return version

    def versions(self) -> list:
        """Model versions known to the store, newest first."""
        return sorted(self.store.list_model_versions(), key=lambda v: v.created_at, reverse=True)

    def _known(self, version: str) -> str:
        known = [v.version for v in self.versions()]
        if version not in known:
            raise UniNoteError(f"unknown model version {version!r}: the store knows {', '.join(known)}")
        return version

    def evaluate_served(self, max_queries: int = 200) -> None:
        """Write eval.json for the served version when it has none (the first-run version), using
        the corpus qrels, with the same harness and format as the RL worker. A version still being
        completed is evaluated once it holds the whole corpus."""
        served = self.served
        path = served.path / "eval.json"
        if path.exists() or not self.corpus.qrels or completion_pending(served.path):
            return
        self._set_status(f"evaluating {served.version} on {max_queries} queries (background)")
        report = evaluate(served.embeddings, self.corpus.qrels, dims=self.dims(),
                          modalities=("note", "image", "text"),
                          granularities=("note", "text", "image", "region"), max_queries=max_queries)
        data, summary = eval_file(report, self.corpus.name, modalities=("note",))
        atomic_write(path, json.dumps(data, indent=2).encode())
        self.store.register_model_version(served.version, stored_path(self.config.versions_root, served.path),
                                          metrics=summary)
        self._set_status(self.status)

    def eval_results(self, version: str | None = None) -> list[dict]:
        """Metric rows (query_modality, granularity, dim, ndcg@10, ...) from a version's eval.json."""
        path = self._version_path(version) if version else self.served.path
        data = read_json(path / "eval.json")
        rows = data.get("results", []) if isinstance(data, dict) else data
        return [r for r in rows if isinstance(r, dict) and "dim" in r]

    def enqueue_rl(self, params: dict | None = None) -> int:
        """Queue an RL run from the collected grades, starting from the served version. Refused
        while another RL job is queued or running (a double click queues one job, not two)."""
        served = self.served
        with self._enqueue_lock:
            busy = self.store.list_jobs(status="running", kind="rl") + \
                self.store.list_jobs(status="queued", kind="rl")
            if busy:
                job = busy[0]
                raise UniNoteError(f"RL job {job.id} is already {job.status} ({job.progress:.0%}): "
                                   "wait for it to finish before starting another run")
            if not self.store.judgments():
                raise UniNoteError("no grades collected yet: grade some pairs before an RL run")
            job = dict(params or {}, base_version=served.version, corpus=self.corpus_source)
            return self.store.enqueue_job("rl", job)

    def jobs(self) -> list:
        return sorted(self.store.list_jobs(), key=lambda j: j.id, reverse=True)
