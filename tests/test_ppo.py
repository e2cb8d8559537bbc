import math

import pytest
import torch

from vlmagent.ppo import explained_variance, gae, normalize, policy_loss, value_loss


def test_gae_terminated_episode_by_hand():
    r = torch.tensor([0.0, 0.0, 1.0])
    v = torch.tensor([0.5, 0.6, 0.7])
    g, lam = 0.9, 0.95
    adv, ret = gae(r, v, terminated=True, gamma=g, gae_lambda=lam)
    d2 = 1.0 - 0.7
    d1 = 0.0 + g * 0.7 - 0.6
    d0 = 0.0 + g * 0.6 - 0.5
    a2 = d2
    a1 = d1 + g * lam * a2
    a0 = d0 + g * lam * a1
    assert adv.tolist() == pytest.approx([a0, a1, a2])
    assert ret.tolist() == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7])


def test_gae_truncated_episode_bootstraps_from_last_value():
    r = torch.tensor([0.0, -1.0])
    v = torch.tensor([2.0, 3.0])
    adv, _ = gae(r, v, terminated=False, gamma=0.5, gae_lambda=1.0)
    a1 = -1.0 + 0.5 * 3.0 - 3.0
    a0 = 0.0 + 0.5 * 3.0 - 2.0 + 0.5 * a1
    assert adv.tolist() == pytest.approx([a0, a1])
    adv_term, _ = gae(r, v, terminated=True, gamma=0.5, gae_lambda=1.0)
    assert adv_term[1].item() == pytest.approx(-4.0)


def test_gae_lambda_zero_is_one_step_td():
    r = torch.tensor([1.0, 2.0, 3.0])
    v = torch.tensor([0.1, 0.2, 0.3])
    adv, _ = gae(r, v, terminated=True, gamma=0.9, gae_lambda=0.0)
    assert adv.tolist() == pytest.approx([1 + 0.9 * 0.2 - 0.1, 2 + 0.9 * 0.3 - 0.2, 3 - 0.3])


def test_policy_loss_clips_by_hand():
    old = torch.zeros(3)
    new = torch.log(torch.tensor([1.5, 0.5, 1.05]))
    adv = torch.tensor([1.0, -1.0, 2.0])
    loss, stats = policy_loss(new, old, adv, clip_coef=0.1)
    # ratio 1.5, A>0 -> clipped to 1.1; ratio 0.5, A<0 -> max(0.5, 0.9) = 0.9; ratio 1.05 unclipped
    expected = -(1.1 * 1.0 + (-1.0) * 0.9 + 2.0 * 1.05) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["clipfrac"] == pytest.approx(2 / 3)
    ratios = torch.tensor([1.5, 0.5, 1.05])
    assert stats["approx_kl"] == pytest.approx(((ratios - 1) - ratios.log()).mean().item(), rel=1e-5)


def test_policy_loss_ratio_one_gives_minus_mean_advantage_and_zero_kl():
    lp = torch.tensor([-3.0, -1.0])
    adv = torch.tensor([0.5, -1.5])
    loss, stats = policy_loss(lp.clone().requires_grad_(), lp, adv, 0.1)
    assert loss.item() == pytest.approx(0.5)
    assert stats == {"approx_kl": 0.0, "clipfrac": 0.0}


def test_value_loss_clipped_by_hand():
    new = torch.tensor([1.0, 0.0])
    old = torch.tensor([0.5, 0.05])
    ret = torch.tensor([2.0, 0.0])
    # step 0: unclipped (1-2)^2=1, clipped 0.6 -> (0.6-2)^2=1.96 -> max 1.96; step 1: 0 vs (-0.05)^2... old+clamp(-0.05)=0
    loss = value_loss(new, old, ret, clip_coef=0.1)
    assert loss.item() == pytest.approx(0.5 * (1.96 + 0.0) / 2)
    assert value_loss(new, old, ret, 0.1, clip_vloss=False).item() == pytest.approx(0.5 * 1.0 / 2)


def test_normalize_and_explained_variance():
    a = normalize(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert a.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert a.std().item() == pytest.approx(1.0, abs=1e-6)
    y = torch.tensor([1.0, 2.0, 3.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(3), y) == pytest.approx(0.0)
    assert math.isnan(explained_variance(y, torch.ones(3)))
