"""One RL run end to end, shared by ``uninote train-rl`` and the trainer worker.

``load_graded`` reads the grades (annotation store or export folder); ``run_rl`` loads the SFT
checkpoint and the corpus the grades refer to, trains on cached frozen-backbone features and
writes the checkpoint folder (``config.json``, ``model.safetensors``, ``training_config.json``,
``metrics.json``, ``reward_model/``). Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins the process
group (NCCL on CUDA, Gloo on CPU) and only rank 0 writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from uninote.data import load_corpus
from uninote.errors import ConfigError
from uninote.model.features import corpus_features
from uninote.model.uninote import UniNoteModel
from uninote.train.devices import init_distributed, resolve_device
from uninote.train.rl import ProgressFn, RLTrainer
from uninote.train.rl_config import RLConfig
from uninote.train.rl_data import GradedPairs, from_rewards_dir, from_store, resolve_corpus_path

log = logging.getLogger(__name__)


@dataclass
class RLRun:
    metrics: dict
    model: object  # the trained UniNoteModel (on the training device)
    corpus: object  # the Corpus the grades refer to
    features: object  # its CorpusFeatures


def load_graded(rewards_dir: str | None = None, db_url: str | None = None,
                max_pairs: int | None = None, aggregation: str = "posterior") -> GradedPairs:
    """Grades from exactly one of an export folder or a store URL, optionally the first N pairs.

    ``aggregation`` combines several annotators' grades of a pair (``rl_data.AGGREGATIONS``).
    """
    if bool(rewards_dir) == bool(db_url):
        raise ConfigError("give exactly one of --rewards DIR or --db URL")
    graded = from_rewards_dir(rewards_dir, aggregation) if rewards_dir else from_store(db_url, aggregation)
    if len(graded) == 0:
        raise ConfigError(f"no graded pairs in {graded.source}: grade some pairs first")
    return graded.head(max_pairs) if max_pairs else graded


def prepare_pooling(model, cfg: RLConfig) -> None:
    """Switch ``model`` to attention pooling when ``cfg`` trains it; call before computing features."""
    if cfg.text_pool_lr > 0 and not model.use_token_pooling():
        log.info("text pooling stays mean: the text backbone %s has no token states", model.config.text_tower)


def run_rl(init: str | Path, graded: GradedPairs, out_dir: str | Path, config: RLConfig | None = None,
           corpus: str | None = None, on_progress: ProgressFn | None = None, should_stop=None,
           progress_bar: bool = False) -> RLRun:
    """Train RL from the SFT checkpoint ``init`` on ``graded`` and save it to ``out_dir``."""
    cfg = (config or RLConfig()).validate()
    device = resolve_device(cfg.device)
    init_distributed(device)
    source = corpus or resolve_corpus_path(graded.corpus)
    model = UniNoteModel.from_pretrained(init)
    if not model.config.freeze_backbones:
        log.warning("the init checkpoint fine-tunes its backbones; RL trains heads and fusion only")
    prepare_pooling(model, cfg)
    data = load_corpus(source)
    feats = corpus_features(data, model, progress=progress_bar)
    trainer = RLTrainer(model, feats, graded, cfg, out_dir, on_progress=on_progress, should_stop=should_stop)
    metrics = trainer.train(graded.fingerprint(), extra={"init": str(init), "corpus": str(source),
                                                         "parent_version": _parent_version(init)})
    return RLRun(metrics, model, data, feats)


def _parent_version(init: str | Path) -> str | None:
    path = Path(init) / "model.safetensors"
    if not path.exists():
        return None
    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("version")
