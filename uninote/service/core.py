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
and mark it active (on a corpus of more than ``config.first_build_notes`` notes, the version
is built on its first ones and the rest added in the background: uninote/service/completion.py).
Progress is reported through ``status`` (one line, polled by the UI),
``progress()`` (step, percent, time left) and tqdm; until ``ready``, the methods that need the
model raise ``UniNoteError`` saying what is being built. With ``config.worker`` the service then
runs the trainer worker as a supervised child process (``WorkerProcess``), stopped by ``close()``.
"""

from __future__ import annotations

import logging
import shlex
import threading
from typing import Any

from annotations.queue import LabelQueue
from annotations.store import AnnotationStore
from uninote.data.loaders import corpus_location, load_corpus
from uninote.errors import UniNoteError
from uninote.service.catalogue import Catalogue
from uninote.service.compare import SecondVersion
from uninote.service.completion import CompletionMethods
from uninote.service.config import ServiceConfig
from uninote.service.folders import load_version
from uninote.service.grading import GradingMethods
from uninote.service.maps import MapMethods
from uninote.service.progress import BuildProgress, BuildSteps
from uninote.service.review import ReviewMethods
from uninote.service.search import EXACT_MAX_NOTES, SearchMethods
from uninote.service.types import ServedVersion
from uninote.service.versions import VersionMethods
from uninote.service.worker_process import WorkerProcess, worker_command

log = logging.getLogger("uninote.service")


class UniNoteService(VersionMethods, SearchMethods, GradingMethods, ReviewMethods, MapMethods,
                     CompletionMethods):
    """Model, embeddings, retriever, annotation store and caches behind plain methods.

    The methods live with their concept: ``versions`` (build, load, serve, evaluate, RL jobs),
    ``search`` (notes, thumbnails, neighbours, side by side, uploads), ``grading`` (the label
    queue and grades), ``review`` (agreement, adjudication), ``maps`` (the Map tab's layouts),
    ``completion`` (adding the rest of a big corpus to a first version built on part of it).
    """

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
        self._compared = SecondVersion(lambda v: load_version(v, self._version_path(self._known(v)),
                                                              self.config.index_uri))
        self._catalogue: tuple[Any, Catalogue] | None = None  # (corpus, its word index)
        self._init_completion()

    # --- lifecycle --------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """One human-readable line: what the service is doing or serving."""
        if self._error:
            return f"error: {self._error}"
        if self._served is not None:
            adding = self.completion()
            notes = adding.describe() if adding is not None else f"{len(self.corpus):,} notes"
            return f"ready · model version {self._served.version} · {notes}"
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
        # a big notes.jsonl is read lazily, and its notes registered once per corpus fingerprint
        self.corpus = load_corpus(self.config.corpus, on_error="skip", lazy=None)
        self.store.register_corpus(self.corpus.name, self.corpus.notes, getattr(self.corpus, "fingerprint", None))
        self.queue = LabelQueue(self.store)
        if version is None:
            version = self._build_default_version()
        self._served = self._load_version(version)
        later = None
        if self.queue.pending() == 0 and not self.store.judgments():
            if len(self._served.embeddings) <= EXACT_MAX_NOTES:
                self._fill_queue()
            else:  # hundreds of searches of a big version: planned after the search opens
                later = threading.Thread(target=self._fill_queue_safely, name="uninote-fill", daemon=True)
        self._ready.set()
        self._start_completion()  # a first version on part of a big corpus: the rest in the background
        if later is not None:
            later.start()
        self._set_status(self.status)
        if self.config.worker:
            self.worker = WorkerProcess(self.config.db_url, self.config.versions_root,
                                        device=self.config.worker_device).start()

    def _fill_queue_safely(self) -> None:
        try:
            with self._fill_lock:  # an annotator asking meanwhile waits for these tasks
                if self.queue.pending() == 0:
                    self._fill_queue()
        except Exception:
            log.exception("planning the label queue failed")

    def close(self) -> None:
        """Stop the trainer worker this service started (if any) and the background completion
        (after the step it is embedding, which is kept); close the served version's Milvus client
        (``UNINOTE_INDEX_URI``)."""
        self._stop_completion()
        if self.worker is not None:
            self.worker.stop()
        served = self._served
        if served is not None and hasattr(served.retriever, "close"):
            served.retriever.close()

    def worker_hint(self) -> str:
        """The command that runs a trainer worker elsewhere on this store and versions root."""
        url = self.store.redacted_url if self.store is not None else self.config.db_url
        return shlex.join(["uninote"] + worker_command(url, self.config.versions_root)[3:])

    def _require_ready(self) -> None:
        if not self.ready:
            raise UniNoteError(self.waiting_for())

    def warm_caches(self, umap_dim: int | None = None, umap_granularity: str = "note") -> None:
        """Background work after start: every photo's thumbnail, then the default map layout."""
        def work():
            photo_notes = getattr(self.corpus, "photo_notes", None)  # a lazy corpus knows them
            seen: set[str] = set()
            for n in photo_notes() if photo_notes else self.corpus.notes:
                if n.images and n.images[0] not in seen:
                    seen.add(n.images[0])
                    self.thumbnail(n.note_id)
            self.precompute_umap(umap_dim, umap_granularity)
            try:
                self.evaluate_served()
            except Exception:
                log.exception("background evaluation failed")
        threading.Thread(target=work, name="uninote-warm", daemon=True).start()
