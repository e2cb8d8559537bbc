"""collect: run envs with a policy and write one row per env step into Parquet shards.

The unit of collection is the episode; shard i of iteration k holds `episodes_per_shard` episodes
whose env seeds derive from (run seed, k, i). A shard is written whole or not at all, so a rerun
after a crash regenerates exactly the missing shards, and the same seed gives the same shards.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vlmagent import prompts
from vlmagent.config import Config, config_dict, stage_config
from vlmagent.envs import env_class, make_env
from vlmagent.policy.load import chat_text
from vlmagent.rollout import Backend, Request, make_backend, token_char_offsets
from vlmagent.rundir import policy_or_current, rollouts_dir
from vlmagent.shards import (
    ROLLOUT_SCHEMA,
    finished_shards,
    policy_inputs,
    read_manifest,
    record_inputs,
    shard_entry,
    shard_path,
    stage_done,
    to_table,
    write_manifest,
    write_shard,
)


@dataclass
class Completion:
    """What a policy wrote for one env step, exactly as generated."""

    response: str
    prompt: str = ""
    prompt_token_ids: list[int] = field(default_factory=list)
    response_token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    action_token_start: int = 0


# An actor answers a batch of env steps: (envs, observations, prompt texts, rng) -> completions.
Actor = Callable[[list[gym.Env], list[np.ndarray], list[str], np.random.Generator], list[Completion]]


def oracle_actor(env_name: str, cot: bool) -> Actor:
    def act(envs, observations, prompt_texts, rng):
        return [Completion(prompts.oracle_response(env_name, e, cot), p) for e, p in zip(envs, prompt_texts)]

    return act


def random_actor() -> Actor:
    def act(envs, observations, prompt_texts, rng):
        out = []
        for e, p in zip(envs, prompt_texts):
            u = e.unwrapped
            out.append(Completion(json.dumps({"action": u.answer(int(rng.integers(len(u.actions))))}), p))
        return out

    return act


def model_request(processor: Any, obs: np.ndarray | None, text: str) -> Request:
    """The generate request for one env step: the chat-templated prompt, the image as the env rendered it."""
    image = Image.fromarray(obs) if obs is not None else None
    return Request(chat_text(processor, text, image is not None), image)


def model_actor(cfg: Config, backend: Backend, processor: Any) -> Actor:
    """A VLM policy: one batched generate call per env step."""

    def act(envs, observations, prompt_texts, rng):
        requests = [model_request(processor, obs, text) for obs, text in zip(observations, prompt_texts)]
        gens = backend.generate(requests, cfg.temperature, cfg.max_new_tokens, seed=int(rng.integers(2**31)))
        tok = processor.tokenizer
        return [
            Completion(
                response=g.text,
                prompt=r.text,
                prompt_token_ids=g.prompt_token_ids,
                response_token_ids=g.response_token_ids,
                logprobs=g.logprobs,
                action_token_start=prompts.action_token_start(
                    g.text, token_char_offsets(tok, g.response_token_ids)
                ),
            )
            for r, g in zip(requests, gens, strict=True)
        ]

    return act


@contextlib.contextmanager
def served(cfg: Config, policy: str) -> Iterator[tuple[Actor, str]]:
    """The actor playing `policy` (oracle, random, or a checkpoint / HF model dir / hub id served by the
    configured backend) and its version. The backend is closed on exit: a vLLM engine runs in processes
    of its own that keep their GPU memory (weights, KV cache) until closed, even once nothing refers to
    the engine, and `loop` runs score and update next, in this process, on the same GPU."""
    if policy == "oracle":
        yield oracle_actor(cfg.env, cfg.cot), "oracle"
        return
    if policy == "random":
        yield random_actor(), "random"
        return
    import torch

    if torch.cuda.is_available():  # a vLLM engine starts only if its gpu_memory_utilization share is
        torch.cuda.empty_cache()  # free: give back what the last update left in this process's cache
    vllm_options = {
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
    }
    backend = make_backend(cfg.backend, policy, **vllm_options)
    try:
        yield model_actor(cfg, backend, backend.processor), policy
    finally:
        backend.close()


def episode_seeds(
    seed: int, iteration: int, shard: int, n: int, group_size: int = 1
) -> tuple[list[int], int]:
    """Env seeds of a shard's episodes (each repeated `group_size` times in a row: a group) and its
    sampling seed, from (run seed, iteration, shard) only."""
    groups = n // group_size
    state = np.random.SeedSequence([seed, iteration, shard]).generate_state(groups + 1, dtype=np.uint32)
    return [int(s) for s in state[:groups] for _ in range(group_size)], int(state[groups])


def png_bytes(obs: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(obs).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def shard_indices(episodes: int, per_shard: int) -> list[tuple[int, int]]:
    """(shard index, episodes in it) covering `episodes`."""
    return [
        (i, min(per_shard, episodes - i * per_shard)) for i in range((episodes + per_shard - 1) // per_shard)
    ]


def env_kwargs(cfg: Config) -> dict[str, Any]:
    """make_env's keyword arguments for this config's env."""
    if env_class(cfg.env).takes_games_root:  # ALFWorld
        root = {"games_root": cfg.alfworld_games} if cfg.alfworld_games else {}
        return {"image_size": cfg.image_size, "history": cfg.alfworld_history, **root}
    return {"image_size": cfg.image_size}


def run_episodes(
    cfg: Config,
    actor: Actor,
    env_seeds: list[int],
    sample_seed: int,
    meta: dict[str, Any],
    on_step: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Play one episode per seed on `cfg.num_envs` env slots, one batched actor call per step.

    A slot whose episode ends starts the next pending one at once, so the batch stays full. What
    each slot plays next depends only on the seeds and the episodes so far: reruns give the same rows.
    """
    rng = np.random.default_rng(sample_seed)
    failure_mode = parse_failure_mode(cfg)
    rows: list[dict[str, Any]] = []
    envs = [make_env(cfg.env, **env_kwargs(cfg)) for _ in range(min(cfg.num_envs, len(env_seeds)))]
    pending = list(range(len(env_seeds)))
    episode = [-1] * len(envs)  # the episode index each slot plays, -1 when idle
    obs: list[Any] = [None] * len(envs)
    steps = [0] * len(envs)
    while True:
        for j in range(len(envs)):
            if episode[j] < 0 and pending:
                episode[j], steps[j] = pending.pop(0), 0
                obs[j] = envs[j].reset(seed=env_seeds[episode[j]])[0]
        live = [j for j in range(len(envs)) if episode[j] >= 0]
        if not live:
            break
        texts = [prompts.build_prompt(cfg.env, cfg.cot, envs[j].unwrapped.state_text()) for j in live]
        completions = actor([envs[j] for j in live], [obs[j] for j in live], texts, rng)
        for j, text, c in zip(live, texts, completions, strict=True):
            columns, obs[j], done = play_step(envs[j], obs[j], text, c, failure_mode, cfg, rng)
            rows.append(
                {
                    **meta,
                    "episode_id": f"{meta['iteration']:06d}-{meta['shard']:05d}-{episode[j]:04d}",
                    "step": steps[j],
                    "env_seed": env_seeds[episode[j]],
                    **columns,
                }
            )
            steps[j] += 1
            if on_step is not None:
                on_step(len(c.response_token_ids), int(done))
            if done:
                episode[j] = -1
    for e in envs:
        e.close()
    return sorted(rows, key=lambda r: (r["episode_id"], r["step"]))


def env_action(
    legal: list[str],
    response: str,
    failure_mode: str,
    cfg: Config,
    rng: np.random.Generator,
    numbered: bool = False,
) -> tuple[str | None, int | str, float]:
    """What a response makes the env step: (the legal action it names or None, what env.step takes, the
    reward penalty). A response that names none: the env judges the raw text ("env"), or the paper's
    random legal action is stepped ("random"; "penalty" also costs cfg.parse_penalty)."""
    action, ok = prompts.parse(legal, response, numbered)
    if ok:
        return action, legal.index(action), 0.0
    if failure_mode == "env":
        return None, response, 0.0  # the env judges the raw text (ALFWorld: -1, nothing moves)
    random_action = legal[int(rng.integers(len(legal)))]
    return None, legal.index(random_action), cfg.parse_penalty if failure_mode == "penalty" else 0.0


def play_step(
    env: gym.Env,
    obs: np.ndarray,
    prompt_text: str,
    c: Completion,
    failure_mode: str,
    cfg: Config,
    rng: np.random.Generator,
) -> tuple[dict[str, Any], np.ndarray, bool]:
    """Step `env` (showing `obs`) with what completion `c` names: the step's row columns (all but the
    episode's), the next observation, and whether the episode ended."""
    u = env.unwrapped
    action, step_with, penalty = env_action(
        list(u.actions), c.response, failure_mode, cfg, rng, u.numbered_actions
    )
    image = png_bytes(obs)
    next_obs, reward, terminated, truncated, info = env.step(step_with)
    columns = {
        "image": image,
        "prompt": c.prompt or prompt_text,  # the prompt as sampled, else the task text (oracle, random)
        "prompt_token_ids": c.prompt_token_ids,
        "response_token_ids": c.response_token_ids,
        "response": c.response,
        "behavior_logprobs": c.logprobs,
        "action_token_start": c.action_token_start,
        "action": action,
        "parse_ok": action is not None,
        "reward": float(reward) + penalty,
        "terminated": bool(terminated),
        "truncated": bool(truncated),
        "info": json.dumps(info, sort_keys=True, default=str),
    }
    return columns, next_obs, bool(terminated or truncated)


def parse_failure_mode(cfg: Config) -> str:
    if cfg.parse_failure != "auto":
        return cfg.parse_failure
    return "env" if env_class(cfg.env).text_actions else "random"


def episode_summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Success is the paper's: an episode whose return is > 0; for an env with `success_in_info` (ALFWorld,
    whose every step pays the goal-condition rate) the game being won, from the last step's info."""
    returns: dict[str, float] = {}
    won: dict[str, bool] = {}
    success_in_info = {name: env_class(name).success_in_info for name in {r["env"] for r in rows}}
    for r in sorted(rows, key=lambda r: (r["episode_id"], r["step"])):
        returns[r["episode_id"]] = returns.get(r["episode_id"], 0.0) + r["reward"]
        if success_in_info[r["env"]]:
            won[r["episode_id"]] = bool(json.loads(r["info"]).get("success", False))
    n = max(len(returns), 1)
    steps = max(len(rows), 1)
    return {
        "episodes": len(returns),
        "steps": len(rows),
        "success_rate": sum(won.get(e, v > 0) for e, v in returns.items()) / n,
        "mean_return": sum(returns.values()) / n,
        "parse_failure_rate": sum(not r["parse_ok"] for r in rows) / steps,
        "mean_response_tokens": sum(len(r["response_token_ids"]) for r in rows) / steps,
    }


def stage_inputs(
    cfg: Config, policy_version: str, iteration: int = 0, seed: int | None = None, stage: str = "collect"
) -> dict[str, Any]:
    """What defines a collect (eval, demos) stage's rows: recorded before its first shard (see stage_done)."""
    seed = cfg.seed if seed is None else seed
    return {
        "stage": stage,
        "iteration": iteration,
        "seed": seed,
        **policy_inputs(policy_version),
        **stage_config(cfg, "collect", stage),
    }


def run(
    cfg: Config,
    out: Path,
    actor: Actor,
    policy_version: str,
    iteration: int = 0,
    seed: int | None = None,
    worker: tuple[int, int] = (0, 1),
    stage: str = "collect",
    overwrite: bool = False,
) -> dict[str, Any] | None:
    """Collect `cfg.episodes` episodes into `out`; return the manifest, or None while shards are missing.

    `worker=(i, n)` makes this process collect only shards s with s % n == i, so n workers can share an
    iteration; whichever finds every shard present writes the MANIFEST. A finished `out` made from
    other inputs (env, seed, policy...) is an error naming the field, unless `overwrite` (starts over).
    """
    out = Path(out)
    inputs = stage_inputs(cfg, policy_version, iteration, seed, stage)
    if stage_done(out, inputs, overwrite):
        return read_manifest(out)
    record_inputs(out, inputs)
    seed = cfg.seed if seed is None else seed
    plan = shard_indices(cfg.episodes, cfg.episodes_per_shard)
    done = finished_shards(out)
    todo = [(s, n) for s, n in plan if s not in done and s % worker[1] == worker[0]]
    total_eps = sum(n for _, n in todo)
    with Progress(
        TextColumn(f"[bold]{stage}[/] {cfg.env}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("episodes", total=total_eps, rate="")
        counts = {"tokens": 0, "episodes": 0}
        t0 = time.perf_counter()

        def on_step(tokens: int, finished: int) -> None:
            counts["tokens"] += tokens
            counts["episodes"] += finished
            dt = max(time.perf_counter() - t0, 1e-9)
            rate = f"{counts['episodes'] / dt:.2f} ep/s {counts['tokens'] / dt:.0f} tok/s"
            progress.update(task, advance=finished, rate=rate)

        for shard, n in todo:
            if shard_path(out, shard).exists():  # another worker wrote it meanwhile (atomic writes)
                progress.update(task, advance=n)
                continue
            env_seeds, sample_seed = episode_seeds(
                seed, iteration, shard, cfg.episodes_per_shard, cfg.group_size
            )
            meta = {
                "run": cfg.run_name,
                "env": cfg.env,
                "iteration": iteration,
                "shard": shard,
                "policy_version": policy_version,
            }
            rows = run_episodes(cfg, actor, env_seeds[:n], sample_seed, meta, on_step)
            write_shard(to_table(rows, ROLLOUT_SCHEMA), shard_path(out, shard))
    done = finished_shards(out)
    if any(s not in done for s, _ in plan):
        return None
    entries = [shard_entry(done[s]) for s, _ in plan]
    write_manifest(
        out,
        entries,
        stage=stage,
        policy_version=policy_version,
        iteration=iteration,
        seed=seed,
        config=config_dict(cfg),
        inputs=inputs,
    )
    return read_manifest(out)


def resolve(
    cfg: Config, run: Path | None, policy: str | None, out: Path | None, echo: Callable[[str], None]
) -> tuple[int, str, Path]:
    """`vlmagent collect`'s iteration, policy and output: the run's newest checkpoint k and iter/k/rollouts
    unless --policy and --out say otherwise."""
    missing = "--policy is required with --out and no --run"
    k, policy = policy_or_current(cfg, run, policy, echo, missing)
    return k, policy, out or rollouts_dir(run, k)  # type: ignore[arg-type]


def play(
    cfg: Config,
    policy: str,
    out: Path,
    iteration: int = 0,
    seed: int | None = None,
    worker: tuple[int, int] = (0, 1),
    stage: str = "collect",
    overwrite: bool = False,
) -> dict[str, Any] | None:
    """`run` with `policy` served (see `served`); the inputs are checked first, so a finished stage or a
    mismatch (exit 2) costs no model load, and --overwrite clears the stage before anything else."""
    if stage_done(out, stage_inputs(cfg, policy, iteration, seed, stage), overwrite):
        return read_manifest(out)
    with served(cfg, policy) as (actor, version):
        return run(cfg, out, actor, version, iteration=iteration, seed=seed, worker=worker, stage=stage)
