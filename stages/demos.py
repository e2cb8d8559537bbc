"""demos: the oracle's episodes, made imperfect on purpose, as SFT data.

There is no separate episode loop: `collect.run` plays the episodes with `demo_actor`, so demos are
ordinary trajectory shards (text only: the oracle writes no token ids; `sft` tokenizes them with the
policy's processor). A demonstrator that always acts optimally would leave RL nothing to improve, so
with probability `random_frac` a step's response names a random legal action instead: an epsilon-greedy
demonstrator whose reasoning is right but whose hand slips. The env steps that random action, so the
episodes are the demonstrator's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmagent import prompts
from vlmagent.config import Config
from vlmagent.stages import collect


def with_action(response: str, action: str) -> str:
    """The response with its action part (from the last "action" key on) naming `action` instead."""
    start = prompts.action_char_start(response)
    if start is None:
        return json.dumps({"action": action})
    return f'{response[:start]}"action": {json.dumps(action)}\n}}'


def epsilon_actor(actor: collect.Actor, random_frac: float) -> collect.Actor:
    """Wrap an actor: each step, with probability random_frac, its response names a random legal action."""
    if random_frac <= 0:
        return actor

    def act(envs, observations, prompt_texts, rng):
        out = actor(envs, observations, prompt_texts, rng)
        for env, c in zip(envs, out, strict=True):
            if rng.random() < random_frac:
                u = env.unwrapped
                c.response = with_action(c.response, u.answer(int(rng.integers(len(u.actions)))))
        return out

    return act


def policy_version(random_frac: float) -> str:
    return "oracle" if random_frac <= 0 else f"oracle+random{random_frac:g}"


DEMO_SEED_OFFSET = 500_000  # demo episodes' seeds start here, apart from training's and eval's


def resolve(run: Path | None, out: Path | None) -> Path:
    """`vlmagent demos`'s output: --out, else the run's demos/."""
    if out is None:
        if run is None:
            raise ValueError("give --out (or --run)")
        out = run / "demos"
    return out


def run(cfg: Config, out: Path, seed: int | None = None) -> dict[str, Any]:
    """`cfg.episodes` demo episodes of `cfg.env` into `out` (a no-op when its MANIFEST exists);
    seed defaults to the run seed + DEMO_SEED_OFFSET."""
    seed = cfg.seed + DEMO_SEED_OFFSET if seed is None else seed
    actor = epsilon_actor(collect.oracle_actor(cfg.env, cfg.cot), cfg.demo_random_frac)
    manifest = collect.run(cfg, out, actor, policy_version(cfg.demo_random_frac), seed=seed, stage="demos")
    assert manifest is not None  # a single worker collects every shard
    return manifest
