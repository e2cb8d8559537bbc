"""PPO math: GAE over env steps and the clipped losses. Pure functions over tensors (CleanRL's names).

One env step is one PPO action: its log-prob is the CoT-scaled sum over the response tokens
(`vlmagent.policy.logprob.action_logprob`), so everything here is per step, not per token.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: bool,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
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


def normalize(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    if advantages.numel() < 2:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def policy_loss(
    newlogprob: torch.Tensor, oldlogprob: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> tuple[torch.Tensor, dict[str, float]]:
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
    newvalue: torch.Tensor,
    oldvalue: torch.Tensor,
    returns: torch.Tensor,
    clip_coef: float,
    clip_vloss: bool = True,
) -> torch.Tensor:
    """0.5 * squared error, optionally clipped around the value the scorer saw."""
    v_loss_unclipped = (newvalue - returns) ** 2
    if not clip_vloss:
        return 0.5 * v_loss_unclipped.mean()
    v_clipped = oldvalue + torch.clamp(newvalue - oldvalue, -clip_coef, clip_coef)
    v_loss_clipped = (v_clipped - returns) ** 2
    return 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    var_y = returns.var().item() if returns.numel() > 1 else 0.0
    return float("nan") if var_y == 0 else 1.0 - (returns - values).var().item() / var_y
