"""Pure RL pieces: rewards, advantages, Plackett-Luce, KL, policy-gradient loss."""

import itertools
import math

import pytest
import torch

from uninote.losses.kl import k3_kl, listwise_kl
from uninote.losses.policy_gradient import policy_gradient_loss
from uninote.train import plackett_luce
from uninote.train.advantages import group_advantages, rewards_to_tensor
from uninote.train.rewards import (REWARD_FUNCTIONS, batch_rewards, merge_grades, ndcg_at_k, ndcg_reward,
                                   top1_grade_reward)


# --- rewards ------------------------------------------------------------------------------------
def test_ndcg_reward_matches_hand_computation():
    grades = {"a": 3, "b": 1, "c": 0}
    r = ndcg_reward("q", [["a", "b", "c"], ["c", "b", "a"], ["b", "x", "a"]], grades, k=2)
    ideal = 7 + 1 / math.log2(3)
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx((0 + 1 / math.log2(3)) / ideal)
    assert r[2] == pytest.approx(1.0 / ideal)  # "x" is ungraded: gain 0


def test_ndcg_reward_is_none_without_relevant_candidates():
    assert ndcg_reward("q", [["a"], ["b"]], {"a": 0, "b": 0}) == [None, None]
    assert ndcg_at_k(["a"], {}, 10) is None


def test_top1_grade_reward():
    assert top1_grade_reward("q", [["a", "b"], ["b", "a"]], {"a": 2}) == [2.0, 0.0]


def test_human_grades_override_predictions():
    merged = merge_grades({"a": 0}, {"a": 2.7, "b": 1.5})
    assert merged == {"a": 0.0, "b": 1.5}


# --- advantages ---------------------------------------------------------------------------------
def test_group_advantages_zero_mean_unit_std_per_group():
    torch.manual_seed(0)
    r = torch.rand(5, 8)
    a = group_advantages(r, eps=0.0)
    assert torch.allclose(a.mean(1), torch.zeros(5), atol=1e-6)
    assert torch.allclose(a.std(1, unbiased=False), torch.ones(5), atol=1e-5)
    # brute-force reference for one group
    row = r[2]
    assert torch.allclose(a[2], (row - row.mean()) / row.std(unbiased=False), atol=1e-5)


def test_group_advantages_constant_group_and_nan_masking():
    r = rewards_to_tensor([[0.5, 0.5, 0.5], [1.0, None, 0.0]])
    a = group_advantages(r)
    assert torch.equal(a[0], torch.zeros(3))
    assert a[1, 1] == 0.0
    assert a[1, 0] > 0 > a[1, 2]
    assert a[1, 0] == pytest.approx(-a[1, 2].item())


def test_group_advantages_scales():
    r = torch.tensor([[0.0, 1.0], [0.0, 3.0]])
    assert torch.allclose(group_advantages(r, "none"), torch.tensor([[-0.5, 0.5], [-1.5, 1.5]]))
    batch = group_advantages(r, "batch", eps=0.0)
    std = torch.tensor([0.0, 1.0, 0.0, 3.0]).std(unbiased=False)
    assert torch.allclose(batch, torch.tensor([[-0.5, 0.5], [-1.5, 1.5]]) / std)
    with pytest.raises(ValueError, match="unknown advantage scale"):
        group_advantages(r, "median")


# --- Plackett-Luce ------------------------------------------------------------------------------
def test_plackett_luce_log_prob_three_items_by_hand():
    logits = torch.log(torch.tensor([[3.0, 2.0, 1.0]]))
    rankings = torch.tensor([[[0, 1, 2], [2, 0, 1], [1, 2, 0]]])
    lp = plackett_luce.log_prob(logits, rankings)
    expected = torch.tensor([[3 / 6 * 2 / 3, 1 / 6 * 3 / 5, 2 / 6 * 1 / 4]]).log()
    assert torch.allclose(lp, expected, atol=1e-6)


def test_plackett_luce_full_rankings_sum_to_one_and_topk_marginal():
    torch.manual_seed(1)
    logits = torch.randn(1, 4)
    perms = torch.tensor([list(p) for p in itertools.permutations(range(4))]).unsqueeze(0)
    assert plackett_luce.log_prob(logits, perms).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    pairs = torch.tensor([list(p) for p in itertools.permutations(range(4), 2)]).unsqueeze(0)
    assert plackett_luce.log_prob(logits, pairs).exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def test_plackett_luce_padding_is_never_sampled_nor_normalised():
    logits = torch.log(torch.tensor([[3.0, 2.0, 1.0, 50.0]]))
    valid = torch.tensor([[True, True, True, False]])
    rankings = torch.tensor([[[0, 1]]])
    lp = plackett_luce.log_prob(logits, rankings, valid)
    assert lp.exp().item() == pytest.approx(3 / 6 * 2 / 3, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    s = plackett_luce.sample_rankings(logits, 200, 3, valid, generator=g)
    assert (s != 3).all()


def test_plackett_luce_sampling_frequencies_match_probabilities():
    logits = torch.log(torch.tensor([[3.0, 2.0, 1.0]]))
    g = torch.Generator().manual_seed(0)
    s = plackett_luce.sample_rankings(logits, 6000, 3, generator=g)[0]
    freq = (s == torch.tensor([0, 1, 2])).all(1).float().mean().item()
    assert freq == pytest.approx(1 / 3, abs=0.03)
    first = (s[:, 0] == 2).float().mean().item()
    assert first == pytest.approx(1 / 6, abs=0.03)


# --- losses -------------------------------------------------------------------------------------
def test_listwise_kl_matches_brute_force_and_is_zero_for_shifted_logits():
    torch.manual_seed(2)
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    p, q = a.softmax(-1), b.softmax(-1)
    expected = (p * (p.log() - q.log())).sum(-1).mean()
    assert listwise_kl(a, b).item() == pytest.approx(expected.item(), abs=1e-6)
    assert listwise_kl(a, a + 4.0).item() == pytest.approx(0.0, abs=1e-6)
    valid = torch.tensor([[True] * 4 + [False]] * 3)
    p4, q4 = a[:, :4].softmax(-1), b[:, :4].softmax(-1)
    expected4 = (p4 * (p4.log() - q4.log())).sum(-1).mean()
    assert listwise_kl(a, b, valid).item() == pytest.approx(expected4.item(), abs=1e-6)


def test_k3_kl_is_nonnegative_and_zero_at_equality():
    lp = torch.randn(4, 3)
    assert k3_kl(lp, lp).item() == pytest.approx(0.0, abs=1e-7)
    assert k3_kl(lp, lp + torch.randn(4, 3)).item() > 0


def test_policy_gradient_raises_logp_of_positive_advantage():
    logits = torch.zeros(1, 3, requires_grad=True)
    rankings = torch.tensor([[[0, 1], [2, 1]]])
    adv = torch.tensor([[1.0, -1.0]])
    loss = policy_gradient_loss(plackett_luce.log_prob(logits, rankings), adv)
    loss.backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 2]  # descent raises item 0, lowers item 2
    masked = policy_gradient_loss(plackett_luce.log_prob(logits, rankings), adv,
                                  torch.zeros(1, 2, dtype=torch.bool))
    assert masked.item() == 0.0


def test_batched_ndcg_reward_matches_the_plain_function():
    torch.manual_seed(3)
    q, p, g, k = 6, 9, 5, 4
    grades = torch.randint(0, 4, (q, p)).float() * (torch.rand(q, p) > 0.3)
    grades[0] = 0.0  # no relevant candidate: reward undefined
    valid = torch.ones(q, p, dtype=torch.bool)
    valid[2, 6:] = False
    rankings = plackett_luce.sample_rankings(torch.randn(q, p), g, k, valid, generator=torch.Generator().manual_seed(0))
    batch = batch_rewards("ndcg", rankings, grades, valid, k)  # what the RL trainer calls
    for i in range(q):
        pool = {j: float(grades[i, j]) for j in range(p) if valid[i, j]}
        plain = ndcg_reward("q", rankings[i].tolist(), pool, k)
        for a, b in zip(batch[i].tolist(), plain):
            assert (b is None and math.isnan(a)) or a == pytest.approx(b, abs=1e-5)


def test_batch_rewards_runs_any_registered_reward_and_refuses_unknown_names(monkeypatch):
    grades = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    rankings = torch.tensor([[[0, 1], [2, 0]], [[1, 0], [0, 1]]])
    top1 = batch_rewards("top1_grade", rankings, grades, valid, 2)  # no vectorised form: the plain function
    assert top1.tolist() == [[2.0, 1.0], [0.0, 0.0]]
    seen = []

    def pool_size(query, rankings, grades, k=10):
        seen.append((query, sorted(grades), k))
        return [float(len(grades))] * len(rankings)

    monkeypatch.setitem(REWARD_FUNCTIONS, "pool_size", pool_size)
    assert batch_rewards("pool_size", rankings, grades, valid, 2).tolist() == [[3.0, 3.0], [2.0, 2.0]]
    assert seen == [("0", [0, 1, 2], 2), ("1", [0, 1], 2)]
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        batch_rewards("nope", rankings, grades, valid, 2)
