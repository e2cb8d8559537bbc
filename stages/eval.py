"""eval: N seeded episodes with a policy on held-out seeds; shards plus a summary (JSON and a table)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmagent.config import Config
from vlmagent.envs import HELDOUT_ENV
from vlmagent.rundir import eval_dir, policy_or_current
from vlmagent.shards import atomic_write, read_json, read_stage
from vlmagent.stages import collect

SUMMARY = "summary.json"


def summary_rows(stage_dir: Path) -> list[dict[str, Any]]:
    """The stage's rows, with just the columns collect.episode_summary reads."""
    columns = ("env", "episode_id", "step", "reward", "parse_ok", "response_token_ids", "info")
    return read_stage(stage_dir).select(*columns).to_dicts()


def summarize(stage_dir: Path) -> dict[str, Any]:
    """Per-episode success (return > 0, the paper's), mean return, parse failures, response length."""
    return collect.episode_summary(summary_rows(stage_dir))


def held_out(cfg: Config, seed: int | None) -> tuple[Config, int]:
    """The config and seed eval plays: held-out seeds (eval_seed) and env (eval_env, ALFWorld's held-out games)."""
    seed = cfg.eval_seed if seed is None else seed
    # group_size 1: every eval episode its own seed, success over distinct held-out starts
    return dataclasses.replace(cfg, env=cfg.eval_env or HELDOUT_ENV.get(cfg.env, cfg.env), group_size=1), seed


def resolve(
    cfg: Config, run: Path | None, policy: str | None, out: Path | None, echo: Callable[[str], None]
) -> tuple[str, Path]:
    """`vlmagent eval`'s policy and output: the run's newest checkpoint k and eval/k unless --policy and
    --out say otherwise."""
    missing = "give --policy (a checkpoint, oracle or random) or --run"
    k, policy = policy_or_current(cfg, run, policy, echo, missing)
    if out is None:
        if run is None:
            raise ValueError("--out is required without --run")
        out = eval_dir(run, k)
    return policy, out


def evaluate(
    cfg: Config,
    policy: str,
    out: Path,
    seed: int | None = None,
    worker: tuple[int, int] = (0, 1),
    overwrite: bool = False,
) -> dict[str, Any] | None:
    """`policy` played (see collect.play) for `cfg.eval_episodes` episodes; the summary as `run`'s."""
    cfg, seed = held_out(dataclasses.replace(cfg, episodes=cfg.eval_episodes), seed)
    if collect.play(cfg, policy, out, seed=seed, worker=worker, stage="eval", overwrite=overwrite) is None:
        return None
    return write_summary(cfg, out, policy, seed)  # served's version of a policy is its name


def run(
    cfg: Config,
    out: Path,
    actor: collect.Actor,
    policy_version: str,
    seed: int | None = None,
    worker: tuple[int, int] = (0, 1),
) -> dict[str, Any] | None:
    """The summary, or None while other workers' shards are missing (see collect.run's `worker`)."""
    cfg, seed = held_out(cfg, seed)
    manifest = collect.run(
        cfg, out, actor, policy_version, iteration=0, seed=seed, worker=worker, stage="eval"
    )
    if manifest is None:
        return None
    return write_summary(cfg, out, policy_version, seed)


def write_summary(cfg: Config, out: Path, policy_version: str, seed: int) -> dict[str, Any]:
    """summary.json of a finished eval (written once; a rerun reads it)."""
    summary_path = Path(out) / SUMMARY
    if summary_path.exists():
        return read_json(summary_path)
    summary = {"env": cfg.env, "policy_version": policy_version, "seed": seed, **summarize(out)}
    atomic_write(summary_path, json.dumps(summary, indent=2).encode())
    return summary
