"""RL trainer on a tiny model and synthetic features: parameters move, reward rises, resume works."""

import json

import numpy as np
import pytest
import torch

from uninote.model.config import UniNoteConfig
from uninote.model.uninote import UniNoteModel
from uninote.model.features import CorpusFeatures
from uninote.train.rl import RLTrainer
from uninote.train.rl_config import RLConfig
from uninote.train.rl_data import GradedPairs
from uninote.train.reward_model import NoteReps, RewardModelConfig, train_reward_model
from uninote.errors import ConfigError


def tiny_model(seed=0):
    cfg = UniNoteConfig(text_tower="tiny", image_tower="tiny", embed_dim=16, matryoshka_dims=[8, 16],
                        hidden_dim=32, tiny_width=16, n_regions=2, image_size=32, seed=seed)
    return UniNoteModel(cfg)


def toy_features(n=60, n_classes=4, width=16, seed=0):
    """Notes of ``n_classes`` classes; the class signal is weak in text and image features."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    centres = torch.randn(n_classes, width, generator=g)
    text = 0.6 * centres[labels] + torch.randn(n, width, generator=g)
    image = 0.6 * centres[labels] + torch.randn(n, width, generator=g)
    feats = CorpusFeatures(
        note_ids=[f"n{i}" for i in range(n)], text=text.half(), has_text=torch.ones(n, dtype=torch.bool),
        image=image.half(), image_owner=torch.arange(n), image_index=torch.zeros(n, dtype=torch.long),
        region=image.half().unsqueeze(1).repeat(1, 4, 1))
    return feats, labels


def toy_grades(labels, per_query=8, n_queries=40, seed=0):
    rng = np.random.default_rng(seed)
    grades = {}
    for q in range(n_queries):
        cands = rng.choice([c for c in range(len(labels)) if c != q], size=per_query, replace=False)
        grades[f"n{q}"] = {f"n{c}": float(3 * (labels[c] == labels[q])) for c in cands}
    return GradedPairs(grades, n_judgments=n_queries * per_query, corpus="toy", source="test")


def fast_config(**kw):
    base = dict(steps=30, queries_per_step=8, group_size=8, rank_k=5, pool_size=12, policy_topk=8,
                refresh_every=10, temperature=0.1, kl_coef=0.05, learning_rate=3e-3, rm_epochs=20,
                log_every=5, save_every=0, device="cpu")
    base.update(kw)
    return RLConfig(**base)


def mean_reward(trainer, steps):
    rows = trainer.history[:steps] if steps > 0 else trainer.history[steps:]
    return float(np.mean([r["reward"] for r in rows]))


def test_rl_step_changes_parameters_and_raises_reward(tmp_path):
    torch.manual_seed(0)
    feats, labels = toy_features()
    model = tiny_model()
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    progress = []
    trainer = RLTrainer(model, feats, toy_grades(labels), fast_config(steps=40, ungraded="zero"), tmp_path,
                        on_progress=lambda s, t, m: progress.append((s, t)))
    metrics = trainer.train("fp")
    after = model.trainable_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert mean_reward(trainer, -10) > mean_reward(trainer, 10) + 0.02
    assert progress[-1] == (40, 40)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["reward_data"]["fingerprint"] == "fp" and saved["steps"] == 40
    cfg = json.loads((tmp_path / "training_config.json").read_text())
    assert cfg["rl"]["steps"] == 40
    assert metrics["reward_last20"]["@16"] > metrics["reward_first20"]["@16"]
    UniNoteModel.from_pretrained(tmp_path)  # the checkpoint loads


def test_rl_with_reward_model_and_resume_matches_uninterrupted(tmp_path):
    feats, labels = toy_features()
    grades = toy_grades(labels)
    cfg = fast_config(steps=12, save_every=6, ungraded="reward_model")
    full = RLTrainer(tiny_model(), feats, grades, cfg, tmp_path / "full")
    full.train("fp")

    class Stop:
        def __init__(self):
            self.calls = 0

        def __call__(self):
            self.calls += 1
            return self.calls == 6

    from uninote.train.rl import StopTraining

    part = RLTrainer(tiny_model(), feats, grades, cfg, tmp_path / "part", should_stop=Stop())
    with pytest.raises(StopTraining):
        part.train("fp")
    assert (tmp_path / "part" / "checkpoint-last" / "trainer_state.json").exists()
    resumed = RLTrainer(tiny_model(), feats, grades, cfg, tmp_path / "part")
    resumed.train("fp")
    assert resumed.history[0]["step"] == 1 and len(resumed.history) == 12
    a, b = full.model.trainable_state_dict(), resumed.model.trainable_state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert (tmp_path / "part" / "reward_model" / "reward_model.safetensors").exists()
    assert "heldout" in resumed.rm_metrics


def test_rl_rejects_grades_for_another_corpus(tmp_path):
    feats, _ = toy_features(n=10)
    other = GradedPairs({"x1": {"x2": 3.0}})
    with pytest.raises(ConfigError, match="--corpus"):
        RLTrainer(tiny_model(), feats, other, fast_config(), tmp_path)


def test_rl_config_validation_messages():
    with pytest.raises(ConfigError, match="group_size"):
        RLConfig(group_size=1).validate()
    with pytest.raises(ConfigError, match="ungraded"):
        RLConfig(ungraded="guess").validate()
    with pytest.raises(ConfigError, match="unknown RLConfig keys"):
        RLConfig.from_dict({"stepz": 3})
    with pytest.raises(ConfigError, match="matryoshka_weights"):
        RLConfig(matryoshka_weights=[1.0]).validate()
    assert RLConfig().validate().steps > 0


def test_reward_model_heldout_metrics_on_toy_task():
    torch.manual_seed(0)
    n, d = 200, 16
    labels = torch.arange(n) % 4
    centres = torch.nn.functional.normalize(torch.randn(4, d), dim=-1)
    note = torch.nn.functional.normalize(centres[labels] + 0.1 * torch.randn(n, d), dim=-1)
    reps = NoteReps(note, note, note, torch.ones(n, dtype=torch.bool))
    rng = np.random.default_rng(0)
    q = rng.integers(0, n, 3000)
    c = rng.integers(0, n, 3000)
    keep = q != c
    q, c = q[keep], c[keep]
    grades = np.where(labels[q] == labels[c], 3, 0).astype(float)
    model, metrics = train_reward_model(reps, q, c, grades, RewardModelConfig(epochs=15, heldout_fraction=0.25))
    held = metrics["heldout"]
    assert held["n"] > 300
    assert held["accuracy"] > held["majority_accuracy"] + 0.1
    assert held["accuracy"] > 0.9 and held["ece"] < 0.1 and held["mae"] < 0.5
    pred = model.expected_grade(reps, torch.as_tensor(q[:50]), torch.as_tensor(c[:50]))
    assert ((pred > 1.5).numpy() == (grades[:50] == 3)).mean() > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_rl_on_cuda_with_bf16_autocast(tmp_path):
    feats, labels = toy_features()
    model = tiny_model()
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    trainer = RLTrainer(model, feats, toy_grades(labels), fast_config(steps=40, device="cuda", ungraded="reward_model"),
                        tmp_path)
    assert trainer.autocast and trainer.device.type == "cuda"
    metrics = trainer.train("fp")
    assert metrics["device"].startswith("cuda") and metrics["bf16"]
    after = model.trainable_state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert mean_reward(trainer, -10) > mean_reward(trainer, 10) + 0.02
    UniNoteModel.from_pretrained(tmp_path, device="cuda")


def test_frozen_modules_keep_their_sft_weights(tmp_path):
    feats, labels = toy_features()
    model = tiny_model()
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    RLTrainer(model, feats, toy_grades(labels), fast_config(steps=5, frozen_modules=["image_head"]), tmp_path).train("fp")
    after = model.trainable_state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("image_head."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("fusion."))
    with pytest.raises(ConfigError, match="frozen_modules"):
        RLConfig(frozen_modules=["backbone"]).validate()


def test_segment_gains_learn_at_their_own_rate_and_stay_put_at_zero(tmp_path):
    feats, labels = toy_features()
    learned = tiny_model()
    trainer = RLTrainer(learned, feats, toy_grades(labels), fast_config(steps=5, segment_gain_lr=0.05), tmp_path / "a")
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [3e-3, 0.05]
    trainer.train("fp")
    assert learned.segment_log_gain.abs().max() > 0.05  # several Adam steps at 0.05, not at the heads' 3e-3
    assert UniNoteModel.from_pretrained(tmp_path / "a").segment_log_gain.allclose(learned.segment_log_gain)
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())["segment_gains"]
    assert saved == pytest.approx(learned.segment_log_gain.detach().exp().tolist(), abs=1e-4)
    fixed = tiny_model()
    before = {k: v.clone() for k, v in fixed.trainable_state_dict().items()}
    RLTrainer(fixed, feats, toy_grades(labels), fast_config(steps=5, segment_gain_lr=0), tmp_path / "b").train("fp")
    assert not fixed.segment_log_gain.any()
    assert any(not torch.equal(before[k], v) for k, v in fixed.trainable_state_dict().items())
    with pytest.raises(ConfigError, match="segment_gain_lr"):
        RLConfig(segment_gain_lr=-1).validate()


def test_auto_ungraded_falls_back_to_graded_pools_when_the_reward_model_is_weak(tmp_path):
    feats, labels = toy_features()
    weak = RLTrainer(tiny_model(), feats, toy_grades(labels), fast_config(ungraded="auto", rm_min_margin=1.5), tmp_path)
    assert weak.ungraded == "drop" and weak.reward_model is None and weak.rm_metrics["used"] is False
    weak.refresh_neighbours()
    assert weak.neighbours is None
    rows, valid, grades = weak.build_pools(np.array([0, 1]), np.random.default_rng(0))
    assert not torch.isnan(grades[valid]).any() and valid.sum(1).tolist() == [8, 8]  # graded only
    strong = RLTrainer(tiny_model(), feats, toy_grades(labels), fast_config(ungraded="auto", rm_min_margin=-1.0),
                       tmp_path / "s")
    assert strong.ungraded == "reward_model" and strong.reward_model is not None
    metrics = weak.train("fp")
    assert metrics["ungraded_effective"] == "drop"


def test_text_query_side_learns_and_skips_notes_without_text(tmp_path):
    feats, labels = toy_features()
    trainer = RLTrainer(tiny_model(), feats, toy_grades(labels),
                        fast_config(steps=40, ungraded="zero", query_modalities=["note", "text"]), tmp_path)
    trainer.train("fp")
    first = np.mean([r["text_reward@16"] for r in trainer.history[:10]])
    last = np.mean([r["text_reward@16"] for r in trainer.history[-10:]])
    assert last > first + 0.02  # typed queries (the note's text alone) rank better after RL

    feats.has_text[:] = False  # no note has text: nothing to train the text side on
    trainer = RLTrainer(tiny_model(), feats, toy_grades(labels),
                        fast_config(steps=2, ungraded="zero", query_modalities=["note", "text"]), tmp_path / "b")
    trainer.train("fp")
    assert "text_reward@16" not in trainer.history[-1] and "reward@16" in trainer.history[-1]
    with pytest.raises(ConfigError, match="query_modalities"):
        RLConfig(query_modalities=["text"]).validate()


def test_fewer_grades_weigh_the_anchor_more_and_hold_the_space_nearer_sft(tmp_path):
    from uninote.train.rl import embed_notes

    feats, labels = toy_features()
    grades = toy_grades(labels)  # 40 queries x 8 = 320 pairs
    assert RLTrainer(tiny_model(), feats, grades, fast_config(anchor_coef=0.5, anchor_ref_pairs=100),
                     tmp_path).anchor_coef == 0.5  # more grades than the reference: unchanged
    drift = {}
    for ref_pairs in (0, 16000):  # off, and 50x the anchor
        model = tiny_model()
        sft = embed_notes(model, feats).note
        trainer = RLTrainer(model, feats, grades, fast_config(steps=20, ungraded="zero", anchor_coef=0.5,
                                                              anchor_ref_pairs=ref_pairs), tmp_path / str(ref_pairs))
        metrics = trainer.train("fp")
        assert metrics["anchor_coef_effective"] == (0.5 if ref_pairs == 0 else 0.5 * ref_pairs / 320)
        drift[ref_pairs] = float((embed_notes(model, feats).note - sft).norm(dim=1).mean())
    assert drift[16000] < 0.8 * drift[0]
    with pytest.raises(ConfigError, match="anchor_ref_pairs"):
        RLConfig(anchor_ref_pairs=-1).validate()


def with_tokens(feats, per_note=3, seed=1):
    """``feats`` plus ragged token states: each note's text feature is the mean of its tokens."""
    g = torch.Generator().manual_seed(seed)
    n, width = feats.text.shape
    noise = torch.randn(n, per_note, width, generator=g)
    tokens = (feats.text.float().unsqueeze(1) + noise - noise.mean(1, keepdim=True)).reshape(-1, width).half()
    feats.tokens, feats.token_offsets = tokens, torch.arange(n + 1) * per_note
    return feats


def test_text_pooling_query_learns_at_its_own_rate_only_when_switched_on(tmp_path):
    feats, labels = toy_features()
    feats = with_tokens(feats)
    model = tiny_model()
    assert model.use_token_pooling()
    trainer = RLTrainer(model, feats, toy_grades(labels), fast_config(steps=5, text_pool_lr=0.05), tmp_path / "a")
    assert sorted(g["lr"] for g in trainer.optimizer.param_groups) == [3e-3, 1e-2, 0.05]
    trainer.train("fp")
    assert model.text_pool.query.abs().max() > 0.05  # several Adam steps at 0.05, not at the heads' 3e-3
    loaded = UniNoteModel.from_pretrained(tmp_path / "a")
    assert loaded.config.text_pooling == "attention" and torch.equal(loaded.text_pool.query, model.text_pool.query)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["text_pooling"] == "attention" and metrics["text_pool_query_norm"] > 0.05
    for lr, pooled in ((0.0, "attention"), (0.05, "mean")):  # lr 0, or a mean-pooling model: the query stays 0
        fixed = tiny_model()
        if pooled == "attention":
            fixed.use_token_pooling()
        RLTrainer(fixed, feats, toy_grades(labels), fast_config(steps=5, text_pool_lr=lr), tmp_path / "b").train("fp")
        assert not fixed.text_pool.query.any() and fixed.config.text_pooling == pooled
    bare, _ = toy_features()
    switched = tiny_model()
    switched.use_token_pooling()
    with pytest.raises(ConfigError, match="features have none"):
        RLTrainer(switched, bare, toy_grades(labels), fast_config(steps=1), tmp_path / "c")
    with pytest.raises(ConfigError, match="text_pool_lr"):
        RLConfig(text_pool_lr=-1).validate()
