"""Resumable RL checkpoints: ``<out>/checkpoint-last/`` (model, optimizer, state), safetensors + JSON.

The folder is written to ``checkpoint-last.tmp`` and renamed, so a run killed mid-save leaves the
previous checkpoint intact. A checkpoint resumes a run only if its resolved config and reward-data
fingerprint match the new run's; otherwise the run starts afresh (and says so).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)
LAST = "checkpoint-last"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                meta["scalars"][f"{idx}.{name}"] = value
    return tensors, meta


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(out_dir: Path, model, optimizer, config, fingerprint: str, step: int, history: list,
                    neighbours=None) -> Path:
    """Write ``out_dir/checkpoint-last`` atomically (tmp folder + rename).

    ``neighbours`` (N, k) int array: the pools' current neighbour lists, so a resumed run samples
    exactly what an uninterrupted one would.
    """
    final, tmp = Path(out_dir) / LAST, Path(out_dir) / f"{LAST}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    if neighbours is not None:
        save_file({"neighbours": torch.as_tensor(neighbours).contiguous()}, str(tmp / "neighbours.safetensors"))
    (tmp / "trainer_state.json").write_text(json.dumps(
        {"step": step, "config": config.to_dict(), "reward_data_fingerprint": fingerprint,
         "history": history}, default=float))
    old = Path(out_dir) / f"{LAST}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


@dataclass
class Resume:
    directory: Path
    step: int
    history: list

    def load_into(self, model, optimizer) -> tuple[int, list]:
        """Load weights and optimizer state; returns (step, history)."""
        weights = load_file(str(self.directory / "model.safetensors"), device=str(model.device))
        model.load_state_dict(weights, strict=False)
        tensors = load_file(str(self.directory / "optimizer.safetensors"), device=str(model.device))
        meta = json.loads((self.directory / "optimizer.json").read_text())
        _restore_optimizer(optimizer, tensors, meta)
        return self.step, list(self.history)

    def neighbours(self):
        """The saved neighbour lists (numpy), or None."""
        path = self.directory / "neighbours.safetensors"
        return load_file(str(path))["neighbours"].numpy() if path.exists() else None


def find_resume(out_dir: Path, config, fingerprint: str) -> Resume | None:
    """The checkpoint to resume from, or None (absent, or made with another config / reward data)."""
    d = Path(out_dir) / LAST
    if not (d / "trainer_state.json").exists():
        return None
    state = json.loads((d / "trainer_state.json").read_text())
    if state.get("config") != config.to_dict() or state.get("reward_data_fingerprint") != fingerprint:
        log.warning("%s was made with another config or other reward data: starting afresh", d)
        return None
    return Resume(d, int(state["step"]), list(state.get("history", [])))
