"""``UniNoteService``: the one object the app (and the trainer tab) talks to.

It composes the corpus, the served model version (model + embeddings + retriever), the annotation
store and a few caches (thumbnails, uploads, UMAP layouts). It knows nothing about Gradio: every
method takes and returns plain Python values, so it can be driven from tests, scripts or a UI.

Serving and switching versions: the served version is one immutable ``ServedVersion`` held in
``self._served``. ``activate(version)`` loads the new folder first, then swaps that reference under
a lock; a search that already took the old reference finishes on it. Side by side may search one
other version too (``neighbours(..., version=...)``, ``compare``): it is loaded beside the served
one and held by ``SecondVersion``, one at a time, so at most two versions are in memory.

Cold start (``start()``): open the store, load the corpus, then serve the active version, or build
the default one into ``<versions root>/<version>/`` (see docs/DESIGN.md "Model version folder")
and mark it active. Progress is reported through ``status`` (one line, polled by the UI),
``progress()`` (step, percent, time left) and tqdm; until ``ready``, the methods that need the
model raise ``UniNoteError`` saying what is being built. With ``config.worker`` the service then
runs the trainer worker as a supervised child process (``WorkerProcess``), stopped by ``close()``.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from annotations.grades import clean_grade
from annotations.planning import choose_queries
from annotations.queue import LabelQueue
from annotations.store import AnnotationStore
from uninote.data.loaders import corpus_location, load_corpus
from uninote.data.note import Note
from uninote.errors import UniNoteError
from uninote.eval import evaluate
from uninote.service.catalogue import Catalogue, CatalogueMatches
from uninote.service.checks import search_settings
from uninote.service.compare import SecondVersion, queue_union, served_dims, upload_vectors
from uninote.service.config import MAX_UPLOAD_PHOTOS, ServiceConfig
from uninote.fileio import atomic_write
from uninote.service.folders import (eval_file, load_version, make_model, read_json, resolve_path,
                                     sft_staging, stored_path, write_version)
from uninote.service.progress import BuildProgress, BuildSteps
from uninote.service.worker_process import WorkerProcess, worker_command
from uninote.service.maps import layout_path, load_layout, per_note_vectors, save_layout, umap_2d
from uninote.service.media import make_thumbnail, save_upload, thumbnail_path
from uninote.service.review import ReviewMethods
from uninote.service.types import Comparison, Neighbour, SearchResult, ServedVersion, UploadedQuery

log = logging.getLogger("uninote.service")


class UniNoteService(ReviewMethods):
    """Model, embeddings, retriever, annotation store and caches behind plain methods."""

    def __init__(self, config: ServiceConfig):
        self.config = config.validate()
        self.corpus = None
        self.store = None
        self.queue = None
        self._served: ServedVersion | None = None
        self._swap_lock = threading.Lock()
        self._fill_lock = threading.Lock()
        self._error: str | None = None
        self._ready = threading.Event()
        self._umap_jobs: dict[tuple, threading.Thread] = {}
        self._umap_lock = threading.Lock()
        self._enqueue_lock = threading.Lock()
        self._steps = BuildSteps(["opening the annotation store", "loading the corpus",
                                  "loading the model version"])
        self.corpus_source: str | None = None  # where the corpus is: absolute path or Hub id
        self.worker: WorkerProcess | None = None
        self._compared = SecondVersion(lambda v: load_version(v, self._version_path(self._known(v))))
        self._catalogue: tuple[Any, Catalogue] | None = None  # (corpus, its word index)

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """One human-readable line: what the service is doing or serving."""
        if self._error:
            return f"error: {self._error}"
        if self._served is not None:
            return f"ready · model version {self._served.version} · {len(self.corpus):,} notes"
        step = self.progress()
        return f"{'first run: ' if step.first_run else ''}{step.describe()}"

    def progress(self) -> BuildProgress:
        """Which step of the start is running, with the live progress bar's percent and time left."""
        return self._steps.now()

    def waiting_for(self) -> str:
        """What the service is waiting for, in a sentence; '' once ready."""
        if self._error:
            return f"The service could not start: {self._error}"
        if self.ready:
            return ""
        step = self.progress()
        what = "The first model version is being built" if step.first_run else "The model is loading"
        return f"{what}: {step.describe()}."

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def _set_status(self, text: str) -> None:
        log.info(text)

    def _begin(self, label: str) -> None:
        """Move the start to its next step."""
        self._steps.begin(label)
        self._set_status(self.status)

    def start(self, background: bool = False, warm: bool = False) -> "UniNoteService":
        """Load corpus and store, then serve (or build) the active version.

        ``background`` returns at once (the UI polls ``status``); ``warm`` then makes every
        thumbnail and the default map layout in the background.
        """
        if background:
            threading.Thread(target=self._start_safely, args=(warm,), name="uninote-start",
                             daemon=True).start()
            return self
        self._start()
        if warm:
            self.warm_caches()
        return self

    def _start_safely(self, warm: bool) -> None:
        try:
            self._start()
            if warm:
                self.warm_caches()
        except Exception as exc:  # shown in the UI status line; the app stays up
            log.exception("service start failed")
            self._error = str(exc)

    def _start(self) -> None:
        self._begin("opening the annotation store")
        self.config.home.mkdir(parents=True, exist_ok=True)
        self.store = AnnotationStore(self.config.db_url)
        version = self._active_version_name()
        if version is None:
            make = "training the default SFT model" if self.config.model == "default" else "making the model"
            self._steps.plan(["loading the corpus", make, "embedding the corpus",
                              "indexing and writing the version", "loading the version"], first_run=True)
        self._begin(f"loading the corpus {self.config.corpus}")
        self.corpus_source = corpus_location(self.config.corpus)
        self.corpus = load_corpus(self.config.corpus, on_error="skip")
        self.store.register_notes(self.corpus.name, self.corpus.notes)
        self.queue = LabelQueue(self.store)
        if version is None:
            version = self._build_default_version()
        self._served = self._load_version(version)
        if self.queue.pending() == 0 and not self.store.judgments():
            self._fill_queue()
        self._ready.set()
        self._set_status(self.status)
        if self.config.worker:
            self.worker = WorkerProcess(self.config.db_url, self.config.versions_root,
                                        device=self.config.worker_device).start()

    def close(self) -> None:
        """Stop the trainer worker this service started (if any)."""
        if self.worker is not None:
            self.worker.stop()

    def worker_hint(self) -> str:
        """The command that runs a trainer worker elsewhere on this store and versions root."""
        url = self.store.redacted_url if self.store is not None else self.config.db_url
        return shlex.join(["uninote"] + worker_command(url, self.config.versions_root)[3:])

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
        small = self.dims()[0]
        lists: dict[str, dict[str, list[str]]] = {}
        for dim in sorted({small, served.embeddings.dim}):
            key = f"dim={dim}/granularity=note/strategy=exact"
            lists[key] = {q: [h.note_id for h in served.retriever.search(q, k=3 * k, dim=dim)] for q in sample}
        log.info("planning label tasks for %d queries from %s", len(sample), served.version)
        self.queue.add_from_neighbours(lists, model_version=served.version)
        return len(sample)

    def _active_version_name(self) -> str | None:
        active = self.store.active_version()
        if active is not None and (self._folder(active.path) / "READY").exists():
            return active.version
        return None

    def _folder(self, stored: str) -> Path:
        return resolve_path(self.config.versions_root, stored)

    # --- versions ---------------------------------------------------------------------------------
    def _build_default_version(self) -> str:
        """First run: make the model named by ``config.model``, embed, index, write the folder."""
        spec = self.config.model
        self._begin("training the default SFT model" if spec == "default" else f"making the model ({spec})")
        model = self._make_model(spec)
        version = "baseline" if str(spec).startswith("baseline:") else model.version
        folder = self.config.versions_root / version
        if not (folder / "READY").exists():
            self._begin(f"embedding {len(self.corpus):,} notes with {version}")
            embeddings = model.embed_corpus(self.corpus, progress=True)
            embeddings.model_version = version
            self._begin(f"indexing {len(self.corpus):,} notes and writing the version")
            self._write_version(folder, spec, model, embeddings)
        self.store.register_model_version(version, stored_path(self.config.versions_root, folder),
                                          corpus=self.corpus_source, metrics=read_json(folder / "eval.json"))
        self.store.set_active_version(version)
        return version

    def _make_model(self, spec: str):
        return make_model(self.config, self.corpus, spec, self._set_status)

    def _write_version(self, folder: Path, spec: str, model, embeddings) -> None:
        """The version folder, through the one writer the RL worker uses too."""
        staging = sft_staging(self.config)  # train_sft's training config and metrics, kept
        files = [staging / "training_config.json", staging / "metrics.json"] if spec == "default" else []
        write_version(folder.parent, folder.name, model, embeddings, spec=spec, model_files=files)
        if spec == "default":
            shutil.rmtree(staging.parent, ignore_errors=True)

    def _load_version(self, version: str) -> ServedVersion:
        if not self.ready:
            self._begin(f"loading model version {version}")
        return load_version(version, self._version_path(version))

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
        return version

    def versions(self) -> list:
        """Model versions known to the store, newest first."""
        return sorted(self.store.list_model_versions(), key=lambda v: v.created_at, reverse=True)

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
            self._catalogue = (corpus, Catalogue(corpus.notes))
        return self._catalogue[1].find(text, limit)

    def _thumb_path(self, note_id: str) -> Path:
        return thumbnail_path(self.config.thumbs_dir, self.corpus.name, note_id)

    def thumbnail(self, note_id: str) -> str | None:
        """Path of a small JPEG of the note's first photo (made once, under thumbs/)."""
        note = self.note(note_id)
        if not note.images:
            return None
        path = self._thumb_path(note_id)
        if not path.exists():
            make_thumbnail(self.corpus.image_path(note, 0), path, self.config.thumb_size)
        return str(path) if path.exists() else None

    def thumbnail_if_cached(self, note_id: str) -> str | None:
        path = self._thumb_path(note_id)
        return str(path) if path.exists() else None

    def warm_caches(self, umap_dim: int | None = None, umap_granularity: str = "note") -> None:
        """Background work after start: every thumbnail, then the default map layout."""
        def work():
            for n in self.corpus.notes:
                self.thumbnail(n.note_id)
            self.precompute_umap(umap_dim, umap_granularity)
            try:
                self.evaluate_served()
            except Exception:
                log.exception("background evaluation failed")
        threading.Thread(target=work, name="uninote-warm", daemon=True).start()

    def evaluate_served(self, max_queries: int = 200) -> None:
        """Write eval.json for the served version when it has none (the first-run version), using
        the corpus qrels, with the same harness and format as the RL worker."""
        served = self.served
        path = served.path / "eval.json"
        if path.exists() or not self.corpus.qrels:
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

    def _known(self, version: str) -> str:
        known = [v.version for v in self.versions()]
        if version not in known:
            raise UniNoteError(f"unknown model version {version!r}: the store knows {', '.join(known)}")
        return version

    def _searched(self, version: str | None) -> ServedVersion:
        """The served version, or ``version`` loaded beside it (one compared version at a time)."""
        served = self.served
        if version in (None, "", served.version):
            return served
        return self._compared.get(version)

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

    # --- evaluation, training jobs ----------------------------------------------------------------
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

    def _require_ready(self) -> None:
        if not self.ready:
            raise UniNoteError(self.waiting_for())

    @staticmethod
    def _require_annotator(annotator: str | None) -> None:
        if not annotator:
            raise UniNoteError("sign in to grade: annotations need a logged-in annotator")

    # --- map ----------------------------------------------------------------------------------------
    def umap(self, dim: int | None = None, granularity: str = "note",
             progress: Callable[[str], None] | None = None):
        """2-D UMAP layout of the served corpus (cached per version, dim and granularity)."""
        served = self.served
        dim = dim or served.embeddings.dim
        cache = layout_path(served.path, granularity, dim)
        if cache.exists():
            return load_layout(cache)
        if progress:
            progress(f"computing UMAP of {len(served.embeddings):,} notes ({granularity}, {dim}-d)")
        vectors = per_note_vectors(served.embeddings.truncate(dim), granularity)
        layout = umap_2d(vectors)
        save_layout(cache, served.embeddings.note_ids, layout)
        return served.embeddings.note_ids, layout

    def precompute_umap(self, dim: int | None = None, granularity: str = "note") -> None:
        """Start computing the layout in the background (no-op when already started or cached)."""
        dim = dim or self.served.embeddings.dim
        key = (self.served.version, dim, granularity)
        with self._umap_lock:
            job = self._umap_jobs.get(key)
            if job is not None and (job.is_alive() or self.umap_cached(dim, granularity)):
                return
            job = threading.Thread(target=self._umap_quietly, args=(dim, granularity), daemon=True)
            self._umap_jobs[key] = job
        job.start()

    def _umap_quietly(self, dim, granularity) -> None:
        try:
            self.umap(dim, granularity)
        except Exception:
            log.exception("background UMAP failed")

    def umap_cached(self, dim: int | None, granularity: str) -> bool:
        dim = dim or self.served.embeddings.dim
        return layout_path(self.served.path, granularity, dim).exists()

    def umap_pending(self, dim: int | None, granularity: str) -> bool:
        job = self._umap_jobs.get((self.served.version, dim or self.served.embeddings.dim, granularity))
        return job is not None and job.is_alive()


