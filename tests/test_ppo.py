import math

import pytest
import torch

from vlmagent.ppo import (
    action_logprob,
    cosine_schedule,
    cot_weights,
    discounted_returns,
    entropy_bonus,
    explained_variance,
    gae,
    gigpo,
    group_advantages,
    grpo,
    normalize_advantages,
    policy_loss,
    ppo_loss,
    value_loss,
)


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


def test_normalize_advantages_by_hand():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(((1.5**2 + 0.5**2) * 2) / 3)  # unbiased: mean 2.5, n - 1 = 3
    want = [(x - 2.5) / (std + 1e-8) for x in (1.0, 2.0, 3.0, 4.0)]
    assert normalize_advantages(a).tolist() == pytest.approx(want, rel=1e-6)
    assert normalize_advantages(torch.tensor([5.0])).tolist() == [5.0]  # one step: nothing to normalise


def test_explained_variance_by_hand():
    y = torch.tensor([1.0, 2.0, 3.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(3), y) == pytest.approx(0.0)
    assert math.isnan(explained_variance(y, torch.ones(3)))


def test_entropy_bonus_and_ppo_loss_by_hand():
    assert entropy_bonus(torch.tensor([1.0, 2.0, 6.0])).item() == pytest.approx(3.0)
    assert entropy_bonus(None).item() == 0.0
    new_lp = torch.log(torch.tensor([1.5, 1.0]))
    old_lp = torch.zeros(2)
    adv = torch.tensor([1.0, -2.0])
    new_v, old_v, ret = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0])
    ent = torch.tensor([0.5, 1.5, 1.0])
    loss, stats = ppo_loss(
        new_lp, old_lp, adv, new_v, old_v, ret, ent, clip_coef=0.2, clip_vloss=True, vf_coef=0.5, ent_coef=0.1
    )
    pg = -(1.2 * 1.0 + 1.0 * -2.0) / 2  # ratio 1.5 clipped to 1.2 for A > 0; ratio 1 for A < 0
    v = 0.5 * ((1 - 3) ** 2 + (0 - 1) ** 2) / 2  # values unchanged: clipped == unclipped
    assert stats["pg_loss"] == pytest.approx(pg) and stats["v_loss"] == pytest.approx(v)
    assert stats["entropy"] == pytest.approx(1.0) and stats["clipfrac"] == pytest.approx(0.5)
    assert loss.item() == pytest.approx(pg + 0.5 * v - 0.1 * 1.0)
    no_ent, _ = ppo_loss(
        new_lp,
        old_lp,
        adv,
        new_v,
        old_v,
        ret,
        None,
        clip_coef=0.2,
        clip_vloss=True,
        vf_coef=0.5,
        ent_coef=0.0,
    )
    assert no_ent.item() == pytest.approx(pg + 0.5 * v)


def test_ppo_loss_entropy_term_pushes_entropy_up():
    """Minimising the loss with ent_coef > 0 raises entropy: its gradient w.r.t. entropy is -ent_coef."""
    ent = torch.tensor([0.3, 0.7], requires_grad=True)
    z = torch.zeros(2)
    loss, _ = ppo_loss(z, z, z, z, z, z, ent, clip_coef=0.1, clip_vloss=False, vf_coef=0.5, ent_coef=0.01)
    loss.backward()
    assert ent.grad.tolist() == pytest.approx([-0.005, -0.005])


def test_cosine_schedule_by_hand():
    # no warm-up (update): peak at 0, midpoint at total / 2, floor at total and after
    assert cosine_schedule(0, 10, 1.0, 0.1) == 1.0
    assert cosine_schedule(5, 10, 1.0, 0.1) == pytest.approx(0.55)
    assert cosine_schedule(10, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine_schedule(25, 10, 1.0, 0.1) == pytest.approx(0.1)
    # warm-up (sft): linear from peak / warmup, then the cosine over the remaining steps
    assert [cosine_schedule(s, 14, 2.0, 0.2, warmup=4) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert cosine_schedule(4, 14, 2.0, 0.2, warmup=4) == 2.0
    assert cosine_schedule(9, 14, 2.0, 0.2, warmup=4) == pytest.approx(0.2 + 0.5 * 1.8)
    assert cosine_schedule(0, 0, 1.0, 0.0) == 1.0  # total 0: no division by zero


def test_cot_scaled_sum_on_hand_masks():
    lp = [torch.tensor([-1.0, -2.0, -3.0, -4.0]), torch.tensor([-1.0, -1.0]), torch.tensor([-2.0, -6.0])]
    # response 0: 2 CoT tokens then 2 action tokens; response 1: no CoT part (start 0);
    # response 2: no action part found (start >= length): every token is CoT
    got = action_logprob(lp, [2, 0, 2], cot_lambda=0.5)
    assert got.tolist() == [0.5 * (-1 - 2) + (-3 - 4), -2.0, 0.5 * (-2 - 6)]
    assert cot_weights([4, 2, 2], [2, 0, 2], 0.5).tolist() == [0.5, 0.5, 1, 1, 1, 1, 0.5, 0.5]
    packed = torch.cat(lp).requires_grad_()
    action_logprob(packed, torch.tensor([2, 0, 2]), 0.5, lengths=torch.tensor([4, 2, 2])).sum().backward()
    assert packed.grad.tolist() == [0.5, 0.5, 1, 1, 1, 1, 0.5, 0.5]
    with pytest.raises(ValueError):
        action_logprob(packed, [0], 0.5, lengths=[3])


def test_group_advantages_by_hand():
    scores = torch.tensor([1.0, 0.0, 1.0, 5.0, 2.0, 2.0, 7.0])
    groups = torch.tensor([3, 3, 3, 8, 1, 1, 9])
    adv = group_advantages(scores, groups)
    std = math.sqrt(((1 / 3) ** 2 * 2 + (2 / 3) ** 2) / 2)  # group 3: mean 2/3, unbiased
    assert adv[:3].tolist() == pytest.approx([(1 / 3) / std, (-2 / 3) / std, (1 / 3) / std], rel=1e-5)
    assert adv[3].item() == 0.0  # a group of one: nothing to compare with
    assert adv[4:6].tolist() == [0.0, 0.0]  # all equal: no signal, whatever their value
    assert adv[6].item() == 0.0


def test_discounted_returns_by_hand():
    r = torch.tensor([0.0, -1.0, 1.0])
    assert discounted_returns(r, 0.5).tolist() == pytest.approx([-0.5 + 0.25, -1 + 0.5, 1.0])


def test_grpo_and_gigpo_by_hand():
    # two groups of two episodes; group 0: returns 1 and 0, group 1: both 1 (no signal)
    ep_adv = grpo(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1]))
    s = 1 / math.sqrt(2) + 1e-6  # std of {1, 0}, unbiased
    assert ep_adv.tolist() == pytest.approx([0.5 / s, -0.5 / s, 0.0, 0.0], rel=1e-5)
    # steps: episode 0 has 2 steps, episode 1 has 1; both start from the same observation (anchor 0),
    # episode 0's second step is an observation nobody else saw (anchor 1)
    step_ep_adv = ep_adv[torch.tensor([0, 0, 1])]
    step_returns = torch.tensor([0.9, 1.0, 0.0])
    adv = gigpo(step_ep_adv, step_returns, torch.tensor([0, 1, 0]), step_weight=0.5)
    s0 = math.sqrt(0.9**2 / 2) + 1e-6  # anchor 0: returns 0.9 and 0.0, mean 0.45
    want = [0.5 / s + 0.5 * 0.45 / s0, 0.5 / s, -0.5 / s - 0.5 * 0.45 / s0]
    assert adv.tolist() == pytest.approx(want, rel=1e-5)


def test_ppo_loss_without_value_term_sends_no_gradient_to_the_value():
    newlogprob = torch.zeros(2, requires_grad=True)
    value = torch.tensor([0.3, -0.2], requires_grad=True)
    adv, ones = torch.tensor([1.0, -1.0]), torch.ones(2)
    for vf_coef in (0.0, 0.5):
        loss, _ = ppo_loss(
            newlogprob, ones.log(), adv, value, ones, ones, None,
            clip_coef=0.2, clip_vloss=True, vf_coef=vf_coef, ent_coef=0.0,
        )  # fmt: skip
        grad = torch.autograd.grad(loss, [newlogprob, value], allow_unused=True)
        assert grad[0] is not None
        assert (grad[1] is None) == (vf_coef == 0)
