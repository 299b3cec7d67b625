"""ListNet term and the corpus anchor KL: hand-computed cases and a tiny trainer run."""

import math

import numpy as np
import pytest
import torch

from uninote.losses.kl import listwise_kl
from uninote.losses.policy_gradient import listnet_loss
from uninote.train.rl import RLTrainer
from uninote.train.rl_config import RLConfig
from uninote.errors import ConfigError

from test_rl_trainer import fast_config, tiny_model, toy_features, toy_grades


def test_listnet_loss_by_hand():
    logits = torch.tensor([[math.log(2.0), 0.0]])  # softmax = [2/3, 1/3]
    assert float(listnet_loss(logits, torch.tensor([[1.0, 0.0]]))) == pytest.approx(-math.log(2 / 3))
    both = -(0.5 * math.log(2 / 3) + 0.5 * math.log(1 / 3))
    assert float(listnet_loss(logits, torch.tensor([[1.0, 1.0]]))) == pytest.approx(both)
    # grade 2 has gain 3, grade 1 gain 1: target [3/4, 1/4]
    mixed = -(0.75 * math.log(2 / 3) + 0.25 * math.log(1 / 3))
    assert float(listnet_loss(logits, torch.tensor([[2.0, 1.0]]))) == pytest.approx(mixed)


def test_listnet_power_sharpens_the_target_so_margins_keep_growing():
    # grade 2 vs grade 1 (gains 3 and 1): power 2 makes the target [9/10, 1/10]
    logits = torch.tensor([[math.log(2.0), 0.0]])
    sharp = -(0.9 * math.log(2 / 3) + 0.1 * math.log(1 / 3))
    assert float(listnet_loss(logits, torch.tensor([[2.0, 1.0]]), power=2.0)) == pytest.approx(sharp)
    # at power 1's optimum (logit gap log 3) power 1 is satisfied, power 2 still widens the gap
    for power, pushes in ((1.0, False), (2.0, True)):
        at = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)
        listnet_loss(at, torch.tensor([[2.0, 1.0]]), power=power).backward()
        assert (at.grad[0, 0] < -1e-3) == pushes and abs(float(at.grad.sum())) < 1e-6
    with pytest.raises(ConfigError):
        RLConfig(listwise_power=0.0).validate()


def test_listnet_loss_skips_padding_and_queries_without_gain():
    logits = torch.tensor([[math.log(2.0), 0.0, 5.0], [1.0, 2.0, 3.0]])
    grades = torch.tensor([[1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    assert float(listnet_loss(logits, grades, valid)) == pytest.approx(-math.log(2 / 3))
    assert float(listnet_loss(logits, torch.zeros(2, 3), valid)) == 0.0


def test_listnet_gradient_raises_the_graded_candidate():
    logits = torch.zeros(1, 3, requires_grad=True)
    listnet_loss(logits, torch.tensor([[3.0, 0.0, 0.0]])).backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises candidate 0


def test_anchor_kl_is_zero_at_sft_and_positive_after_training(tmp_path):
    feats, labels = toy_features()
    cfg = fast_config(anchor_coef=1.0, anchor_queries=8, listwise_coef=1.0, steps=15)
    trainer = RLTrainer(tiny_model(), feats, toy_grades(labels), cfg, tmp_path)
    rng = np.random.default_rng(0)
    assert float(trainer._anchor_kl(rng)) == pytest.approx(0.0, abs=1e-5)
    trainer.train("fp")
    assert trainer.history[-1]["anchor_kl"] > 0
    q = trainer.ref_neighbours
    assert q.shape == (len(feats), cfg.pool_size) and not (q == np.arange(len(feats))[:, None]).any()


def test_anchor_at_every_prefix_is_the_weighted_mean_of_per_dim_anchors(tmp_path):
    feats, labels = toy_features()
    trainer = RLTrainer(tiny_model(), feats, toy_grades(labels),
                        fast_config(anchor_coef=1.0, anchor_queries=8, steps=10, anchor_dims="all",
                                    matryoshka_dims=[8, 16], matryoshka_weights=[3.0, 1.0]), tmp_path)
    assert float(trainer._anchor_kl(np.random.default_rng(0))) == pytest.approx(0.0, abs=1e-5)
    trainer.train("fp")

    def anchor(dims):
        trainer.cfg.anchor_dims = "all"
        trainer.dims, trainer.weights = dims, [1.0] * len(dims)
        return float(trainer._anchor_kl(np.random.default_rng(1)))

    both = 0.75 * anchor([8]) + 0.25 * anchor([16])
    trainer.dims, trainer.weights = [8, 16], [0.75, 0.25]
    assert float(trainer._anchor_kl(np.random.default_rng(1))) == pytest.approx(both, rel=1e-5)
    trainer.cfg.anchor_dims = "full"
    assert float(trainer._anchor_kl(np.random.default_rng(1))) == pytest.approx(anchor([16]), rel=1e-5)
    assert anchor([8]) != pytest.approx(anchor([16]), rel=1e-3)  # the prefixes really differ


def test_anchor_and_listwise_config_validation():
    for bad in (dict(listwise_coef=-1.0), dict(anchor_coef=-0.1), dict(anchor_queries=0), dict(anchor_dims="half")):
        with pytest.raises(ConfigError):
            RLConfig(**bad).validate()


def test_listwise_kl_helper_still_zero_for_same_logits():
    x = torch.randn(3, 5)
    assert float(listwise_kl(x, x)) == pytest.approx(0.0, abs=1e-6)
