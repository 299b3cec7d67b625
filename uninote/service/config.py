"""``ServiceConfig``: where the app's corpus, versions, database and caches are, from the environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from uninote.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
FASHION_HUB_ID = "ashraq/fashion-product-images-small"
STRATEGIES = ("exact", "adaptive", "local", "global+local")
MAX_UPLOAD_PHOTOS = 4
# First-run SFT: the trainer's defaults with fewer epochs, so `make demo` is usable in minutes on
# a laptop CPU (measured in docs/results/app.md). Override with $UNINOTE_SFT_OVERRIDES (JSON).
DEMO_SFT = {"epochs": 3}
# First-run subset: a bigger corpus (the Hub copy of the catalogue, about 44k items) gets its first
# version on this many notes, the rest added in the background (uninote/service/completion.py).
FIRST_BUILD_NOTES = 6500


def default_home() -> Path:
    """Where versions, the database and caches live: $UNINOTE_HOME, /data/uninote on Spaces."""
    if os.environ.get("UNINOTE_HOME"):
        return Path(os.environ["UNINOTE_HOME"])
    if Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/uninote")
    return Path(os.environ.get("UNINOTE_CACHE", Path.home() / ".cache" / "uninote"))


def default_corpus() -> str:
    """$UNINOTE_DEMO_CORPUS, else the shared fashion catalogue, else (Spaces) its Hub id."""
    if os.environ.get("UNINOTE_DEMO_CORPUS"):
        return os.environ["UNINOTE_DEMO_CORPUS"]
    shared = Path(os.environ.get("UNINOTE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    local = shared / "fashion-product-images-small"
    return str(local) if local.exists() else FASHION_HUB_ID


@dataclass
class ServiceConfig:
    """Everything the service needs, read from the environment by ``from_env``."""

    corpus: str = field(default_factory=default_corpus, metadata={
        "help": ("Corpus source: native folder, fashion parquet folder or Hub id ($UNINOTE_DEMO_CORPUS; "
                 "default the shared fashion catalogue, else its Hub id).")})
    home: Path = field(default_factory=default_home, metadata={
        "help": ("Root for versions/, annotations.db, thumbs/, uploads/, umap caches ($UNINOTE_HOME; default "
                 "/data/uninote on Spaces, else $UNINOTE_CACHE or ~/.cache/uninote).")})
    db_url: str = field(default="", metadata={"help": "SQLAlchemy URL of the annotation store ($UNINOTE_DB); "
                                                      "default sqlite:///<home>/annotations.db."})
    model: str = field(default="default", metadata={"help": (
        "What to build when no version is active ($UNINOTE_MODEL): 'default' (SFT on first run when "
        "the trainer is installed, else baseline:concat), 'baseline:concat', or a checkpoint folder.")})
    model_config: dict = field(default_factory=dict, metadata={
        "help": ("UniNoteConfig overrides for a freshly built model ($UNINOTE_MODEL_CONFIG, JSON; "
                 "default none).")})
    sft_overrides: dict = field(default_factory=dict, metadata={
        "help": ("Overrides for the first-run SFT config on top of DEMO_SFT ($UNINOTE_SFT_OVERRIDES, JSON; "
                 "default none).")})
    first_build_notes: int = field(default=FIRST_BUILD_NOTES, metadata={"help": (
        "A first run on a corpus of more notes than this builds the first version on its first "
        "this many notes (in corpus order; SFT trains on them too) and serves it at once; the rest "
        "is embedded in the background and added to the served index and the version folder "
        f"($UNINOTE_FIRST_BUILD_NOTES; default {FIRST_BUILD_NOTES:,}; 0 builds on the whole corpus).")})
    completion_notes: int = field(default=2000, metadata={"help": (
        "Notes embedded and added per step of that background completion, one shard of the "
        "version's embeddings each ($UNINOTE_COMPLETION_NOTES; default 2,000).")})
    label_queries: int = field(default=300, metadata={"help": (
        "Queries planned per label-queue fill: at first start, and again from the active version whenever "
        "an annotator finds the queue empty, until every note has been a query (default 300).")})
    max_upload_bytes: int = field(default=8 * 1024 * 1024, metadata={
        "help": "Per-photo upload limit in bytes (default 8 MiB)."})
    max_upload_pixels: int = field(default=30_000_000, metadata={
        "help": "Per-photo pixel limit (default 30 million)."})
    thumb_size: int = field(default=224, metadata={
        "help": "Longest side of gallery thumbnails in pixels (default 224)."})
    worker: bool = field(default=False, metadata={"help": (
        "Run the trainer worker (`uninote worker`) as a supervised child process on this store and "
        "versions root once the service is ready ($UNINOTE_WORKER; default off here, on in the app "
        "unless 0).")})
    worker_device: str = field(default="auto", metadata={"help": (
        "RL device of that worker: auto, cpu or cuda ($UNINOTE_WORKER_DEVICE; default auto).")})
    guidelines: str = field(default="", metadata={"help": (
        "Markdown file with what each grade 0-3 means, shown while grading ($UNINOTE_GUIDELINES; "
        "default empty: the built-in catalogue guidelines).")})
    reviewers: tuple = field(default=(), metadata={"help": (
        "Annotators who may adjudicate disagreements ($UNINOTE_REVIEWERS, comma-separated; "
        "default empty: every signed-in annotator).")})
    index_uri: str = field(default_factory=lambda: os.environ.get("UNINOTE_INDEX_URI", "").strip(), metadata={
        "help": ("Milvus URI the searches go to ($UNINOTE_INDEX_URI: http://host:19530, or a Milvus "
                 "Lite file *.db); a version's collections missing there are built from its embeddings on "
                 "first use. Default empty: in-process FAISS.")})
    min_view_s: float = field(default=0.4, metadata={"help": (
        "A grade from the Annotate tab that arrives sooner after its pair was shown (or changes the "
        "pair's grade sooner after it was given) is refused as a double key press; 0 turns it off "
        "(default 0.4 s).")})

    def validate(self) -> "ServiceConfig":
        self.home = Path(self.home)
        if not self.db_url:
            self.db_url = f"sqlite:///{self.home / 'annotations.db'}"
        self.reviewers = tuple(r.strip() for r in self.reviewers if r and r.strip())
        if self.guidelines:
            from annotations.guidelines import load_guidelines

            load_guidelines(self.guidelines)  # a missing or empty file fails at start, not while grading
        if self.min_view_s < 0:
            raise ConfigError(f"min_view_s must be >= 0, got {self.min_view_s}")
        if self.first_build_notes < 0 or self.completion_notes < 1:
            raise ConfigError(f"first_build_notes must be >= 0 (0: the whole corpus) and completion_notes "
                              f">= 1, got {self.first_build_notes} and {self.completion_notes}")
        if self.max_upload_bytes < 1024 or self.thumb_size < 32 or self.label_queries < 1:
            raise ConfigError("max_upload_bytes must be >= 1024, thumb_size >= 32 and label_queries >= 1")
        return self

    @classmethod
    def from_env(cls) -> "ServiceConfig":
        cfg = cls()
        cfg.db_url = os.environ.get("UNINOTE_DB", "")
        cfg.model = os.environ.get("UNINOTE_MODEL", cfg.model)
        cfg.worker = os.environ.get("UNINOTE_WORKER", "1").strip().lower() not in ("0", "false", "no", "off")
        cfg.worker_device = os.environ.get("UNINOTE_WORKER_DEVICE", cfg.worker_device)
        cfg.guidelines = os.environ.get("UNINOTE_GUIDELINES", cfg.guidelines)
        cfg.reviewers = tuple(os.environ.get("UNINOTE_REVIEWERS", "").split(","))
        cfg.index_uri = os.environ.get("UNINOTE_INDEX_URI", "").strip()
        for env, attr in (("UNINOTE_FIRST_BUILD_NOTES", "first_build_notes"),
                          ("UNINOTE_COMPLETION_NOTES", "completion_notes")):
            if os.environ.get(env, "").strip():
                try:
                    setattr(cfg, attr, int(os.environ[env]))
                except ValueError:
                    raise ConfigError(f"{env} must be a whole number of notes, got {os.environ[env]!r}") from None
        for env, attr in (("UNINOTE_SFT_OVERRIDES", "sft_overrides"), ("UNINOTE_MODEL_CONFIG", "model_config")):
            if os.environ.get(env):
                try:
                    setattr(cfg, attr, json.loads(os.environ[env]))
                except ValueError as exc:
                    raise ConfigError(f"{env} must be a JSON object ({exc})") from None
        return cfg.validate()

    @property
    def versions_root(self) -> Path:
        return self.home / "versions"

    @property
    def thumbs_dir(self) -> Path:
        return self.home / "thumbs"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

