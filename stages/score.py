"""score: the current policy's values and old log-probs for every collected step, then GAE per episode.

Works from the stored token ids and images only (never re-tokenizes): what the trainer scores is
exactly what the sampler produced. One scored shard per rollout shard, so a rerun redoes only the
missing ones. Also reports the sampler-vs-trainer log-prob gap, the first sign of a mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import torch
from rich.progress import Progress

from vlmagent.config import Config, config_dict, has_critic, stage_config
from vlmagent.policy.forward import evaluate_actions, forward_hidden
from vlmagent.policy.load import Policy, load_policy, model_inputs_for
from vlmagent.ppo import discounted_returns, gae, gigpo, grpo
from vlmagent.rundir import ckpt_dir, latest_ckpt, rollouts_dir, scored_dir
from vlmagent.shards import (
    MANIFEST,
    ROLLOUT_SCHEMA,
    SCORED_SCHEMA,
    ShardError,
    finished_shards,
    policy_inputs,
    read_manifest,
    read_shard,
    record_inputs,
    sha256_file,
    shard_entry,
    shard_index,
    shard_path,
    stage_done,
    write_manifest,
    write_shard,
)


@torch.no_grad()
def score_rows(
    policy: Policy, df: pl.DataFrame, cfg: Config, batch_size: int
) -> tuple[list[float], list[float], list[list[float]]]:
    """Value, CoT-scaled action log-prob and per-token log-probs of each row, in row order."""
    values: list[float] = []
    action_lp: list[float] = []
    token_lp: list[list[float]] = []
    for i in range(0, df.height, batch_size):
        b = df.slice(i, batch_size)
        hidden = forward_hidden(
            policy,
            b["prompt_token_ids"].to_list(),
            b["response_token_ids"].to_list(),
            model_inputs_for(policy, b["image"].to_list()),
        )
        out = evaluate_actions(
            policy, hidden, b["action_token_start"].to_list(), cfg.temperature, cfg.cot_lambda
        )
        values += out["values"].float().tolist()
        action_lp += out["action_logprobs"].float().tolist()
        token_lp += [t.tolist() for t in out["token_logprobs"].float().split(hidden.lengths.tolist())]
    return values, action_lp, token_lp


def add_advantages(df: pl.DataFrame, cfg: Config) -> pl.DataFrame:
    """Each step's return and advantage by `cfg.advantage` (the estimators are in vlmagent/ppo.py).
    Episodes and their groups never span shards, so a shard is scored on its own."""
    df = df.with_row_index("_row")
    episodes = df.sort("episode_id", "step").partition_by("episode_id", maintain_order=True)
    for ep in episodes:
        last = ep.row(ep.height - 1, named=True)
        if not (last["terminated"] or last["truncated"]):
            raise ShardError(f"episode {last['episode_id']}: ends without terminated or truncated")
    rows = torch.tensor([r for ep in episodes for r in ep["_row"].to_list()])
    rewards = [torch.tensor(ep["reward"].to_list(), dtype=torch.float64) for ep in episodes]
    if has_critic(cfg):
        per_episode = [
            gae(
                r,
                torch.tensor(ep["value"].to_list(), dtype=torch.float64),
                terminated=bool(ep["terminated"][-1]),
                gamma=cfg.gamma,
                gae_lambda=cfg.gae_lambda,
            )
            for ep, r in zip(episodes, rewards)
        ]
        advantages = torch.cat([a for a, _ in per_episode])
        returns = torch.cat([r for _, r in per_episode])
    else:
        groups = torch.tensor([ep["env_seed"][0] for ep in episodes])
        episode_advantage = grpo(torch.stack([r.sum() for r in rewards]), groups)
        steps_per_episode = torch.tensor([ep.height for ep in episodes])
        advantages = episode_advantage.repeat_interleave(steps_per_episode)
        returns = torch.cat([discounted_returns(r, cfg.gamma) for r in rewards])
        if cfg.advantage == "gigpo":
            advantages = gigpo(advantages, returns, anchor_ids(episodes), cfg.step_advantage_weight)
    advantage = torch.zeros(df.height, dtype=torch.float64).index_copy_(0, rows, advantages)
    ret = torch.zeros(df.height, dtype=torch.float64).index_copy_(0, rows, returns)
    return df.drop("_row").with_columns(
        pl.Series("return", ret.tolist(), dtype=pl.Float32),
        pl.Series("advantage", advantage.tolist(), dtype=pl.Float32),
    )


def anchor_ids(episodes: list[pl.DataFrame]) -> torch.Tensor:
    """GiGPO's anchor state of each step, in the episodes' order: one id per (group, observation), the
    observation being what the model read (its image and prompt tokens)."""
    ids: dict[tuple, int] = {}
    steps = (
        (row["env_seed"], row["image"], tuple(row["prompt_token_ids"]))
        for ep in episodes
        for row in ep.select("env_seed", "image", "prompt_token_ids").iter_rows(named=True)
    )
    return torch.tensor([ids.setdefault(key, len(ids)) for key in steps])


def stage_inputs(cfg: Config, rollouts: Path, policy: str) -> dict[str, Any]:
    """What defines the scored rows: the rollouts (their MANIFEST's hash), the scoring policy, the config."""
    manifest = Path(rollouts) / MANIFEST
    if read_manifest(rollouts) is None:
        raise ShardError(f"{rollouts}: no {MANIFEST} (collect has not finished)")
    return {
        "stage": "score",
        "rollouts_manifest_sha256": sha256_file(manifest),
        **policy_inputs(policy),
        **stage_config(cfg, "score"),
    }


def resolve(
    run: Path | None, rollouts: Path | None, policy: str | None, out: Path | None
) -> tuple[Path, str, Path]:
    """`vlmagent score`'s inputs and output: the run's newest checkpoint k, iter/k/rollouts and iter/k/scored,
    each unless given."""
    if run is not None:
        k = latest_ckpt(run) or 0
        rollouts, out = rollouts or rollouts_dir(run, k), out or scored_dir(run, k)
        policy = policy or str(ckpt_dir(run, k))
    if rollouts is None or out is None or policy is None:
        raise ValueError("give --run, or all of --rollouts, --policy and --out")
    return rollouts, policy, out


def run(
    cfg: Config,
    rollouts: Path,
    policy: Policy | str | Path,
    out: Path,
    batch_size: int = 8,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score every rollout shard of `rollouts` into `out` (a no-op for shards already there). A finished
    `out` made from other inputs (rollouts, policy, config) is an error, unless `overwrite`."""
    out = Path(out)
    inputs = stage_inputs(cfg, rollouts, policy.source if isinstance(policy, Policy) else str(policy))
    if stage_done(out, inputs, overwrite):
        return read_manifest(out)  # type: ignore[return-value]
    source = read_manifest(rollouts)
    assert source is not None  # stage_inputs checked it
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    record_inputs(out, inputs)
    done = finished_shards(out)
    gap_sum, gap_max, gap_n = 0.0, 0.0, 0
    policy.model.eval()
    with Progress(transient=True) as progress:
        task = progress.add_task("score", total=sum(s["rows"] for s in source["shards"]))
        for entry in source["shards"]:
            index = shard_index(entry["file"])
            if index in done:
                progress.advance(task, entry["rows"])
                continue
            df = pl.from_arrow(
                read_shard(Path(rollouts) / entry["file"], ROLLOUT_SCHEMA, entry, policy.vocab_size)
            )
            assert isinstance(df, pl.DataFrame)
            if (df["response_token_ids"].list.len() == 0).any():
                raise ShardError(
                    f"{Path(rollouts) / entry['file']}: rows without response_token_ids "
                    "(scripted-policy rows cannot be scored; collect with a model policy)"
                )
            image_token = policy.family.image_token_id(policy.model)
            bad = df.with_row_index().filter(pl.col("response_token_ids").list.contains(image_token))
            if bad.height:
                raise ShardError(
                    f"{Path(rollouts) / entry['file']}: row {bad['index'][0]} has the image placeholder token "
                    f"{image_token} in its response (the sampler must suppress it)"
                )
            values, action_lp, token_lp = score_rows(policy, df, cfg, batch_size)
            for mine, theirs in zip(token_lp, df["behavior_logprobs"].to_list()):
                for a, b in zip(mine, theirs):
                    gap_sum += abs(a - b)
                    gap_max = max(gap_max, abs(a - b))
                    gap_n += 1
            if not has_critic(cfg):  # grpo, gigpo: no value head to read
                values = [0.0] * len(values)
            df = df.with_columns(
                pl.Series("value", values, dtype=pl.Float32),
                pl.Series("old_logprob", action_lp, dtype=pl.Float32),
            )
            df = add_advantages(df, cfg)
            write_shard(df.to_arrow().select(SCORED_SCHEMA.names).cast(SCORED_SCHEMA), shard_path(out, index))
            progress.advance(task, entry["rows"])
    done = finished_shards(out)
    entries = [shard_entry(done[shard_index(s["file"])]) for s in source["shards"]]
    write_manifest(
        out,
        entries,
        stage="score",
        policy_version=policy.source,
        rollouts=str(rollouts),
        # over the shards scored by this process (None when all were scored before a restart)
        logprob_gap_mean=gap_sum / gap_n if gap_n else None,
        logprob_gap_max=gap_max if gap_n else None,
        config=config_dict(cfg),
        inputs=inputs,
    )
    return read_manifest(out)  # type: ignore[return-value]
