"""The RL trainer under ``torchrun`` with two CPU processes (Gloo): the DDP path really runs.

Each rank samples its own queries, gradients are all-reduced, so after training both ranks hold
the same weights although their batches (and local rewards) differed; only rank 0 writes.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from test_rl_cli import graded_store  # noqa: F401 - the tiny corpus, SFT checkpoint and grade store

WORKER = textwrap.dedent('''
    import hashlib, json, os, sys
    import torch
    from uninote.train.rl_config import RLConfig
    from uninote.train.rl_pipeline import load_graded, run_rl

    init, url, corpus, out, report = sys.argv[1:6]
    cfg = RLConfig(steps=6, queries_per_step=4, group_size=4, rank_k=3, pool_size=6, rm_epochs=2,
                   device="cpu", save_every=0, matryoshka_dims=[8, 16])
    run = run_rl(init, load_graded(db_url=url), out, cfg, corpus=corpus)
    h = hashlib.sha256()
    for name, t in sorted(run.model.state_dict().items()):
        h.update(name.encode()); h.update(t.detach().float().contiguous().numpy().tobytes())
    rank = torch.distributed.get_rank()
    with open(f"{report}/rank{rank}.json", "w") as f:
        json.dump({"weights": h.hexdigest(), "world": torch.distributed.get_world_size(),
                   "rewards": [s["reward"] for s in run.metrics["history"]]}, f)
    torch.distributed.destroy_process_group()
''')


def _state_hash(path):
    from uninote.model.uninote import UniNoteModel

    h = hashlib.sha256()
    for name, t in sorted(UniNoteModel.from_pretrained(path).state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_train_rl_under_torchrun_keeps_ranks_in_sync(graded_store, tmp_path):  # noqa: F811
    tmp, url, root = graded_store
    script, report = tmp_path / "worker.py", tmp_path / "report"
    script.write_text(WORKER)
    report.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", UNINOTE_CACHE=str(tmp / "cache"))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp / "sft"), url, str(root), str(tmp / "rl"), str(report)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # all-reduced gradients: one model
    assert ranks[0]["rewards"] != ranks[1]["rewards"]  # but each rank sampled its own queries
    metrics = json.loads((tmp / "rl" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 6
    assert _state_hash(tmp / "rl") == ranks[0]["weights"]  # rank 0 wrote the synced weights
    assert _state_hash(tmp / "sft") != ranks[0]["weights"]  # and training changed them
