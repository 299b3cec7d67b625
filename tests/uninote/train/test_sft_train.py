import json

import numpy as np
import pytest
import torch

from uninote.errors import ConfigError
from uninote.model import UniNoteModel
from uninote.train.sft import train_sft
from uninote.train.sft_config import SFTConfig


@pytest.fixture
def corpus(synthetic_corpus):
    return synthetic_corpus(36)


def tiny_sft(**kw):
    base = dict(text_tower="tiny", image_tower="tiny", embed_dim=32, matryoshka_dims=[8, 16, 32],
                image_size=32, n_regions=2, hidden_dim=32, batch_size=8, epochs=4, threads=1, lr=3e-3)
    base.update(kw)
    return SFTConfig(**base)


def test_training_changes_trainable_weights_only_and_lowers_the_loss(corpus, tmp_path):
    cfg = tiny_sft()
    before = UniNoteModel(cfg.model_config())
    model, metrics = train_sft(corpus, tmp_path / "out", cfg, progress=False)
    curve = metrics["loss_curve"]
    assert np.mean(curve[-3:]) < 0.8 * np.mean(curve[:3])
    after = model.state_dict()
    for name, value in before.state_dict().items():
        changed = not torch.equal(value, after[name])
        if name.startswith(("text_tower", "image_tower")) or name == "segment_log_gain":  # RL learns the gains
            assert not changed, name
    assert not torch.equal(before.text_head.skip.weight, model.text_head.skip.weight)
    assert not torch.equal(before.fusion.mlp[-1].weight, model.fusion.mlp[-1].weight)
    files = {f.name for f in (tmp_path / "out").iterdir()}
    assert {"config.json", "model.safetensors", "training_config.json", "metrics.json"} <= files
    saved = json.loads((tmp_path / "out" / "training_config.json").read_text())
    assert saved["batch_size"] == 8 and saved["matryoshka"] is True
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["peak_rss_mb"] > 0 and m["wall_seconds"] > 0 and len(m["loss_curve"]) == m["steps"]
    assert set(m["loss_terms"][-1]) >= {"note", "image_note", "text_note", "image_text", "region",
                                        "image_note_kd", "image_image_kd"}


def test_training_is_deterministic(corpus, tmp_path):
    a, _ = train_sft(corpus, tmp_path / "a", tiny_sft(max_steps=5), progress=False)
    b, _ = train_sft(corpus, tmp_path / "b", tiny_sft(max_steps=5), progress=False)
    assert a.version == b.version


def test_each_step_encodes_once_even_with_matryoshka(corpus, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = UniNoteModel.forward_features

    def counted(self, batch, normalize=True):
        calls["n"] += 1
        return original(self, batch, normalize)

    monkeypatch.setattr(UniNoteModel, "forward_features", counted)
    _, metrics = train_sft(corpus, tmp_path / "o", tiny_sft(max_steps=3), progress=False)
    assert calls["n"] == metrics["steps"] == 3


def test_no_matryoshka_trains_full_dim_only(corpus, tmp_path):
    from uninote.train.sft import build_loss
    from uninote.losses import MatryoshkaLoss

    assert isinstance(build_loss(tiny_sft()), MatryoshkaLoss)
    assert not isinstance(build_loss(tiny_sft(matryoshka=False)), MatryoshkaLoss)
    _, m = train_sft(corpus, tmp_path / "n", tiny_sft(matryoshka=False, max_steps=3), progress=False)
    assert m["steps"] == 3


def test_full_finetune_updates_backbones(corpus, tmp_path):
    cfg = tiny_sft(full_finetune=True, max_steps=4, num_workers=2, image_colour_bins=4)  # histograms from raw pixels
    before = UniNoteModel(cfg.model_config())
    model, metrics = train_sft(corpus, tmp_path / "ff", cfg, progress=False)  # on CUDA when there is one
    model = model.cpu()
    assert 0 < metrics["batch_build_seconds"] and 0 <= metrics["data_wait_seconds"] <= metrics["train_seconds"]
    assert not torch.equal(before.image_tower.net[0].weight, model.image_tower.net[0].weight)
    assert not torch.equal(before.text_tower.embed.weight, model.text_tower.embed.weight)
    again = UniNoteModel.from_pretrained(tmp_path / "ff")
    assert again.version == model.version and again.config.image_colour_bins == 4


def test_gradient_checkpointing_trains_the_same_model(corpus, tmp_path, monkeypatch):
    """--gradient-checkpointing recomputes the image backbone's blocks in the backward pass and
    ends at the same weights; without --full-finetune it is a clear error."""
    import uninote.model.towers as towers

    calls, recomputed = [], towers.recomputed
    monkeypatch.setattr(towers, "recomputed", lambda *a, **k: calls.append(1) or recomputed(*a, **k))
    runs = {on: train_sft(corpus, tmp_path / str(on), tiny_sft(full_finetune=True, max_steps=3, num_workers=0,
                                                              device="cpu", gradient_checkpointing=on),
                          progress=False)
            for on in (False, True)}
    assert len(calls) == 3 * 2  # three steps through the tiny tower's two blocks
    assert runs[True][1]["loss_curve"] == pytest.approx(runs[False][1]["loss_curve"], rel=1e-5)
    kept, recomputing = (runs[on][0].state_dict() for on in (False, True))
    for name in kept:
        torch.testing.assert_close(recomputing[name], kept[name], msg=name)
    with pytest.raises(ConfigError, match="gradient_checkpointing recomputes the backbone"):
        tiny_sft(gradient_checkpointing=True).validate()


def test_ddp_path_runs_with_gloo_world_size_one(corpus, tmp_path, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29533")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    try:
        model, metrics = train_sft(corpus, tmp_path / "ddp", tiny_sft(full_finetune=True, max_steps=2, num_workers=0),
                                   progress=False)
        assert dist.is_initialized() and metrics["world_size"] == 1 and metrics["steps"] == 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize("kw,match", [
    (dict(loss_weights={"nope": 1.0}), "unknown loss_weights"),
    (dict(matryoshka_weights=[1.0]), "one weight per dim"),
    (dict(temperature=0), "temperature"),
    (dict(matryoshka_dims=[8, 64]), "strictly increasing"),
    (dict(device="gpu"), "device='gpu'"),
])
def test_sft_config_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        tiny_sft(**kw).validate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_asked_for_without_a_gpu_says_so(corpus, tmp_path):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train_sft(corpus, tmp_path / "x", tiny_sft(full_finetune=True, device="cuda"), progress=False)


SFT_WORKER = '''
import hashlib, json, sys
import torch
from uninote.data import load_corpus
from uninote.train.sft import train_sft
from uninote.train.sft_config import SFTConfig

corpus, out, report = sys.argv[1:4]
cfg = SFTConfig(text_tower="tiny", image_tower="tiny", embed_dim=32, matryoshka_dims=[8, 16, 32], image_size=32,
                n_regions=2, hidden_dim=32, batch_size=8, epochs=1, threads=1, lr=3e-3, full_finetune=True,
                max_steps=3, num_workers=0, device="cpu")  # two CPU ranks, also on a one-GPU machine
model, metrics = train_sft(load_corpus(corpus, on_error="skip"), out, cfg, progress=False)
h = hashlib.sha256()
for name, t in sorted(model.state_dict().items()):
    h.update(name.encode()); h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
rank = torch.distributed.get_rank()
json.dump({"weights": h.hexdigest(), "world": metrics["world_size"], "loss": metrics["loss_curve"]},
          open(f"{report}/rank{rank}.json", "w"))
torch.distributed.destroy_process_group()
'''


def test_full_finetune_under_torchrun_two_cpu_ranks_stay_in_sync(corpus, tmp_path):
    """The DDP path for real: two Gloo ranks see different shares of each batch, end with one model."""
    import os
    import subprocess
    import sys

    script, report = tmp_path / "worker.py", tmp_path / "report"
    script.write_text(SFT_WORKER)
    report.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(corpus.root), str(tmp_path / "out"), str(report)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert ranks[0]["loss"] != ranks[1]["loss"]  # each rank computed the loss on its own share
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.integration
def test_full_finetune_benchmark_runs_and_both_pixel_formats_train_alike(tmp_path):
    """scripts/bench_full_finetune.py (real EfficientNet-Lite0): uint8 and float32 batches carry the
    same photos and recomputed blocks give the same gradients, so the same steps end at the same
    loss; the table reports the input pipeline."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "scripts" / "bench_full_finetune.py"
    proc = subprocess.run([sys.executable, str(script), "--workers", "0", "--steps", "3", "--batch-size", "4",
                           "--notes", "24", "--image-size", "64", "--bert-layers", "1", "--threads", "1",
                           "--checkpointing", "off", "on"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in proc.stdout.splitlines() if line.startswith("| 0 |")]
    assert [(r[1], r[2]) for r in rows] == [("uint8", "off"), ("uint8", "on"), ("float", "off"), ("float", "on")]
    assert len({r[-1] for r in rows}) == 1  # identical last loss
    assert all(float(r[7]) >= 0 and float(r[8]) > 0 for r in rows)  # waited / building seconds


@pytest.mark.parametrize("bins", [0, 4])  # 4: the cache keeps the colour histograms beside the maps
def test_trained_image_blocks_change_and_the_frozen_ones_do_not(corpus, tmp_path, bins):
    cfg = tiny_sft(image_trained_blocks=1, image_colour_bins=bins, map_crop=3, image_blocks_lr_scale=1.0)
    before = UniNoteModel(cfg.model_config())
    model, metrics = train_sft(corpus, tmp_path / "out", cfg, progress=False)
    curve = metrics["loss_curve"]
    assert np.mean(curve[-3:]) < 0.8 * np.mean(curve[:3])
    after = model.state_dict()
    trained = {"image_tower.net.2.weight", "image_tower.net.2.bias"}
    for name, value in before.state_dict().items():
        if name.startswith(("text_tower", "image_tower")):
            assert torch.equal(value, after[name]) != (name in trained), name
    loaded = UniNoteModel.from_pretrained(tmp_path / "out")
    assert loaded.version == model.version == metrics["version"]
    assert torch.equal(loaded.image_tower.net[2].weight, model.image_tower.net[2].weight)
    emb = loaded.embed_corpus(corpus, progress=False)  # serving: the feature cache's maps + trained blocks
    assert loaded.image_feature_dim == loaded.image_tower.feature_dim + bins ** 3
    query = loaded.encode_query(corpus.notes[5], corpus.root)  # an upload: raw photo through the tower
    assert abs(float(emb.note[5] @ query.note) - 1.0) < 1e-3
    assert np.abs(emb.region[emb.region_owner == 5] - query.regions).max() < 2e-3


def test_map_crops_are_windows_of_the_cached_map():
    from uninote.train.sft import random_crops

    maps = torch.arange(3 * 2 * 7 * 7, dtype=torch.float32).reshape(3, 2, 7, 7)
    crops = random_crops(maps, 5, torch.Generator().manual_seed(0))
    assert crops.shape == (3, 2, 5, 5)
    for m in range(3):
        top, left = divmod(int(crops[m, 0, 0, 0] - maps[m, 0, 0, 0]), 7)
        assert torch.equal(crops[m], maps[m, :, top:top + 5, left:left + 5])
    assert random_crops(maps, 7, torch.Generator()) is maps


def test_map_crop_needs_trained_blocks():
    with pytest.raises(ConfigError, match="map_crop=3: crops of cached maps need --image-trained-blocks"):
        tiny_sft(map_crop=3).validate()
    with pytest.raises(ConfigError, match="full fine-tuning"):
        tiny_sft(image_trained_blocks=1, image_colour_bins=0, full_finetune=True).validate()
