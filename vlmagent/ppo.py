"""The whole PPO algorithm as pure functions over tensors (CleanRL's names), read top to bottom:

1. Advantages, one estimator chosen by `advantage` in run.toml:
   `gae` (the paper's): per episode, from its rewards and the value head's values;
   `grpo`: no critic; an episode's return against the others of its group (episodes played from the
   same env seed), every step of the episode taking the episode's advantage;
   `gigpo` (verl-agent's GiGPO): grpo's episode advantage plus a step advantage: the discounted return
   from a step against those of the group's other steps from the identical observation.
2. `normalize_advantages`: zero mean, unit std over an update's steps.
3. `action_logprob`: one env step is one PPO action; its log-prob is the sum over the response's
   tokens with the chain-of-thought tokens scaled by `cot_lambda` (Zhai et al. 2024).
4. `policy_loss`, `value_loss`, the entropy bonus, and `ppo_loss`, the total that update minimises.
5. `cosine_schedule`: the learning rate of update (per PPO update) and of sft (per step).

Everything here is per env step, not per token; stages/update.py only feeds it batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    terminated: bool,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Advantages and returns of one whole episode (1-D tensors over its steps).

    A terminated episode has no future value. A truncated one is bootstrapped: the state after the
    last step was never shown to the model, so we use the value of the last observed state as its
    estimate (the reference code wrongly treats truncation as termination).
    """
    n = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = 0.0
    for t in reversed(range(n)):
        if t == n - 1:
            nextnonterminal = 0.0 if terminated else 1.0
            nextvalue = values[t]
        else:
            nextnonterminal = 1.0
            nextvalue = values[t + 1]
        delta = rewards[t] + gamma * nextvalue * nextnonterminal - values[t]
        lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
        advantages[t] = lastgaelam
    return advantages, advantages + values


def group_advantages(scores: Tensor, groups: Tensor, eps: float = 1e-6) -> Tensor:
    """(score - group mean) / (group std + eps), where `groups` holds each score's group id. A group of
    one has nothing to compare with and gets 0; so does a group whose scores are all equal."""
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    n = counts.to(scores.dtype)
    mean = torch.zeros_like(n).index_add_(0, inverse, scores) / n
    centred = scores - mean[inverse]
    var = torch.zeros_like(n).index_add_(0, inverse, centred**2) / (n - 1).clamp(min=1)  # unbiased
    advantages = centred / (var.sqrt()[inverse] + eps)
    return torch.where(counts[inverse] > 1, advantages, torch.zeros_like(advantages))


def discounted_returns(rewards: Tensor, gamma: float) -> Tensor:
    """sum_k gamma^k r_{t+k} from each step t of one episode to its end."""
    returns = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def grpo(episode_returns: Tensor, episode_groups: Tensor) -> Tensor:
    """GRPO's advantage of each episode: its return against its group's (one value per episode)."""
    return group_advantages(episode_returns, episode_groups)


def gigpo(
    step_episode_advantage: Tensor, step_returns: Tensor, step_anchors: Tensor, step_weight: float
) -> Tensor:
    """GiGPO's advantage of each step: its episode's grpo advantage plus `step_weight` times the step's
    discounted return against those of the steps in its anchor group (the same episode group and an
    identical observation), which credits the step rather than the whole episode."""
    return step_episode_advantage + step_weight * group_advantages(step_returns, step_anchors)


def normalize_advantages(advantages: Tensor, eps: float = 1e-8) -> Tensor:
    """(A - mean) / (std + eps) over an update's steps (every rank holds all of them)."""
    if advantages.numel() < 2:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def _as_lengths(lengths: Sequence[int] | Tensor, device: torch.device | None) -> Tensor:
    return torch.as_tensor(lengths, dtype=torch.long, device=device)


def cot_weights(
    lengths: Sequence[int] | Tensor,
    action_start: Sequence[int] | Tensor,
    cot_lambda: float,
    device: torch.device | None = None,
) -> Tensor:
    """Per-token weights of a packed ragged batch: cot_lambda before each response's action start, 1 after."""
    lens = _as_lengths(lengths, device)
    starts = _as_lengths(action_start, device)
    offsets = torch.cumsum(lens, 0) - lens
    seq = torch.repeat_interleave(torch.arange(len(lens), device=lens.device), lens)
    pos = torch.arange(int(lens.sum()), device=lens.device) - offsets[seq]
    return torch.where(pos < starts[seq], cot_lambda, 1.0).float()


def action_logprob(
    token_logprobs: Tensor | Sequence[Tensor],
    action_start: Sequence[int] | Tensor,
    cot_lambda: float,
    lengths: Sequence[int] | Tensor | None = None,
) -> Tensor:
    """log pi(a|s) = cot_lambda * sum(CoT token log-probs) + sum(action token log-probs), one per response.

    token_logprobs: a list of per-response 1-D tensors, or one packed 1-D tensor with `lengths`.
    action_start[i]: index of response i's first action token (0 = no CoT part: all tokens weigh 1;
    a value >= the length means no action part was found and every token is CoT).
    """
    if not isinstance(token_logprobs, Tensor):
        lengths = [len(t) for t in token_logprobs]
        token_logprobs = torch.cat(list(token_logprobs)) if lengths else torch.zeros(0)
    elif lengths is None:
        raise ValueError("a packed token_logprobs tensor needs `lengths`")
    lens = _as_lengths(lengths, token_logprobs.device)
    if int(lens.sum()) != token_logprobs.shape[0]:
        raise ValueError(f"lengths sum to {int(lens.sum())} but there are {token_logprobs.shape[0]} tokens")
    w = cot_weights(lens, action_start, cot_lambda, device=token_logprobs.device)
    seq = torch.repeat_interleave(torch.arange(len(lens), device=lens.device), lens)
    dtype = torch.promote_types(token_logprobs.dtype, torch.float32)  # fp32, or fp64 for a reference
    out = torch.zeros(len(lens), dtype=dtype, device=token_logprobs.device)
    return out.index_add(0, seq, token_logprobs.to(dtype) * w.to(dtype))


def policy_loss(
    newlogprob: Tensor, oldlogprob: Tensor, advantages: Tensor, clip_coef: float
) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate objective (to minimise) and the diagnostics that say whether PPO is healthy."""
    logratio = newlogprob - oldlogprob
    ratio = logratio.exp()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()
    with torch.no_grad():
        # http://joschu.net/blog/kl-approx.html
        approx_kl = ((ratio - 1) - logratio).mean().item()
        clipfrac = ((ratio - 1.0).abs() > clip_coef).float().mean().item()
    return pg_loss, {"approx_kl": approx_kl, "clipfrac": clipfrac}


def value_loss(
    newvalue: Tensor,
    oldvalue: Tensor,
    returns: Tensor,
    clip_coef: float,
    clip_vloss: bool = True,
) -> Tensor:
    """0.5 * squared error, optionally clipped around the value the scorer saw."""
    v_loss_unclipped = (newvalue - returns) ** 2
    if not clip_vloss:
        return 0.5 * v_loss_unclipped.mean()
    v_clipped = oldvalue + torch.clamp(newvalue - oldvalue, -clip_coef, clip_coef)
    v_loss_clipped = (v_clipped - returns) ** 2
    return 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()


def entropy_bonus(token_entropy: Tensor | None) -> Tensor:
    """Mean entropy per response token (0 when not computed: ent_coef = 0 skips it)."""
    return token_entropy.mean() if token_entropy is not None else torch.zeros(())


def ppo_loss(
    newlogprob: Tensor,
    oldlogprob: Tensor,
    advantages: Tensor,
    newvalue: Tensor,
    oldvalue: Tensor,
    returns: Tensor,
    token_entropy: Tensor | None,
    *,
    clip_coef: float,
    clip_vloss: bool,
    vf_coef: float,
    ent_coef: float,
) -> tuple[Tensor, dict[str, float]]:
    """The loss one mini-batch minimises: policy loss + vf_coef * value loss - ent_coef * entropy.

    Returns it with the per-mini-batch stats update reports (its terms, approx KL, clip fraction).
    """
    pg_loss, stats = policy_loss(newlogprob, oldlogprob, advantages, clip_coef)
    v_loss = value_loss(newvalue, oldvalue, returns, clip_coef, clip_vloss)
    entropy = entropy_bonus(token_entropy)
    # vf_coef = 0 (the critic-free estimators): no value term at all, so no gradient reaches the value head
    loss = pg_loss + (vf_coef * v_loss if vf_coef > 0 else 0.0) - ent_coef * entropy
    return loss, {"pg_loss": pg_loss.item(), "v_loss": v_loss.item(), "entropy": entropy.item(), **stats}


def cosine_schedule(step: int, total: int, peak: float, floor: float, warmup: int = 0) -> float:
    """Learning rate at `step` of `total`: linear warm-up to `peak` over `warmup` steps, then a half
    cosine from `peak` down to `floor` at `total` (and `floor` after it)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(step - warmup, total - warmup) / max(total - warmup, 1)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * t))


def explained_variance(values: Tensor, returns: Tensor) -> float:
    """1 - Var(returns - values) / Var(returns): how much of the returns the value head predicts."""
    var_y = returns.var().item() if returns.numel() > 1 else 0.0
    return float("nan") if var_y == 0 else 1.0 - (returns - values).var().item() / var_y
