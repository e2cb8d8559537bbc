"""One config every stage reads: `runs/<name>/run.toml`, overridden by CLI flags.

Every field is declared once here with a one-line help (CleanRL style). Defaults are the paper's
reference values where it has one (Zhai et al. 2024), scaled for a CPU where noted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmagent.envs import env_name


def _f(default: Any, help: str, lo: float | None = None, hi: float | None = None, rows: str = "") -> Any:
    """A field with its one-line help, for numbers the range it must lie in (checked by load_config), and
    the stages whose rows (or checkpoint) it changes (`rows`, recorded in their inputs: `stage_config`)."""
    return field(default=default, metadata={"help": help, "lo": lo, "hi": hi, "rows": rows.split()})


@dataclass
class Config:
    # what and where
    env: str = _f(
        "blackjack",
        "environment short name (numberline, ezpoints, points24, blackjack, alfworld)",
        rows="collect",
    )
    run_name: str = _f("", "run name (defaults to the run directory's name)", rows="collect")
    policy: str = _f(
        "", "initial policy: a checkpoint dir, an HF model dir or hub id; empty = build the tiny model"
    )
    alfworld_games: str = _f(
        "",
        "ALFWorld games root holding train/ and heldout/ (or the official valid_unseen/); empty:"
        " $VLMAGENT_ALFWORLD_GAMES, else the games shipped in data/alfworld",
        rows="collect",
    )
    alfworld_history: int = _f(
        3, "ALFWorld: how many recent commands, with their feedback, the prompt shows", lo=0, rows="collect"
    )
    seed: int = _f(
        0,
        "run seed: env seeds and sampling seeds derive from (seed, iteration, shard)",
        lo=0,
        rows="update sft",
    )
    # collection
    backend: str = _f("auto", "generation backend: auto (vllm on GPU if installed, else hf), vllm or hf")
    episodes: int = _f(64, "episodes collected per iteration", lo=1, rows="collect")
    episodes_per_shard: int = _f(
        16,
        "episodes per shard: the unit of restart and of --shards i/n; collect refills its batch within a "
        "shard only: a few times num_envs keeps the batch full between episodes",
        lo=1,
        rows="collect",
    )
    num_envs: int = _f(
        16,
        "envs stepped side by side, one batched generate call per step (at most one shard's episodes)",
        lo=1,
        rows="collect",
    )
    cot: bool = _f(
        True, "ask for chain-of-thought before the action (the paper's main setting)", rows="collect"
    )
    temperature: float = _f(
        0.2,
        "sampling temperature; log-probs are taken at this temperature too",
        lo=0,
        rows="collect score update",
    )
    max_new_tokens: int = _f(256, "max tokens generated per step", lo=1, rows="collect")
    image_size: int = _f(
        300, "env observation size in pixels (the processor resizes for the model)", lo=8, rows="collect"
    )
    parse_failure: str = _f(
        "auto",
        "on an unparseable response: 'random' legal action (paper, card tasks), 'penalty' (random action and "
        "parse_penalty), 'env' (the env judges the text: ALFWorld's -1, no move); auto: env for ALFWorld, else random",
        rows="collect",
    )
    parse_penalty: float = _f(
        -1.0,
        "reward added to a step whose response did not parse, when parse_failure=penalty",
        rows="collect",
    )
    group_size: int = _f(
        1,
        "episodes collect plays from each env seed, side by side in one shard (the group grpo and gigpo"
        " compare); must divide episodes and episodes_per_shard",
        lo=1,
        rows="collect",
    )
    # score / PPO (the paper's reference values)
    advantage: str = _f(
        "gae",
        "advantage estimator: 'gae' (the paper's, with the value head), 'grpo' (an episode's return against"
        " its group's) or 'gigpo' (grpo plus steps against the group's steps from the same observation);"
        " grpo and gigpo train and score no value head and need group_size >= 2",
        rows="score update",
    )
    step_advantage_weight: float = _f(
        1.0, "gigpo: weight of the step advantage beside the episode's", lo=0, rows="score"
    )
    gamma: float = _f(0.9, "discount over env steps", lo=0, hi=1, rows="score")
    gae_lambda: float = _f(0.95, "GAE lambda", lo=0, hi=1, rows="score")
    cot_lambda: float = _f(
        0.5,
        "scale of the CoT tokens' log-prob in the action log-prob (0.2 for ALFWorld)",
        lo=0,
        rows="score update",
    )
    clip_coef: float = _f(0.1, "PPO ratio clip, also the value clip", lo=0, rows="update")
    clip_vloss: bool = _f(True, "clip the value loss around the scored value", rows="update")
    vf_coef: float = _f(0.5, "value loss coefficient", lo=0, rows="update")
    ent_coef: float = _f(
        0.0,
        "entropy coefficient: > 0 a bonus (exploration), < 0 a penalty that sharpens every token's"
        " distribution (the paper uses none)",
        rows="update",
    )
    norm_adv: bool = _f(True, "normalise advantages over each update's batch", rows="update")
    skip_zero_advantage: bool = _f(
        False,
        "grpo, gigpo: train only on the steps with a non-zero advantage (a group whose episodes all returned"
        " the same teaches nothing: its steps carry no gradient, only compute, and would dilute the"
        " advantage normalisation). An update with none left keeps the policy and its optimizer as they were,"
        " with or without this",
        rows="update",
    )
    update_epochs: int = _f(4, "PPO epochs over each iteration's steps", lo=1, rows="update")
    minibatch_size: int = _f(
        4, "steps per mini-batch, over all torchrun ranks (each takes 1/N)", lo=1, rows="update"
    )
    grad_accum: int = _f(4, "mini-batches per optimizer step (the paper: 1 x 128)", lo=1, rows="update")
    learning_rate: float = _f(1e-5, "peak Adam learning rate", lo=0, rows="update")
    min_learning_rate: float = _f(1e-9, "cosine schedule floor", lo=0, rows="update")
    value_learning_rate: float = _f(
        0.0,
        "peak Adam learning rate of the value head, on the same schedule (0: learning_rate)",
        lo=0,
        rows="update",
    )
    total_updates: int = _f(25, "updates the cosine schedule spans (the paper: 25)", lo=1, rows="update")
    adam_eps: float = _f(1e-7, "Adam epsilon", lo=0, rows="update")
    max_grad_norm: float = _f(0.01, "gradient norm clip", lo=0, rows="update")
    target_kl: float = _f(
        0.0, "stop an update's epochs early when approx KL exceeds this (0 = never)", lo=0, rows="update"
    )
    logprob_chunk: int = _f(512, "response tokens per chunk in the fused log-prob", lo=1)
    train_vision: bool = _f(
        True,
        "sft and update train the vision tower and projector (false: frozen as loaded; a randomly"
        " initialised tower trained with a tiny LM collapses to image-independent features)",
        rows="update sft",
    )
    lora: bool = _f(False, "train LoRA adapters (peft) instead of the full model")
    lora_r: int = _f(8, "LoRA rank", lo=1)
    lora_alpha: int = _f(16, "LoRA alpha", lo=1)
    # demos and SFT (the warm start RL begins from)
    demo_random_frac: float = _f(
        0.0,
        "share of demo steps whose action is a random legal one (imperfect demos on purpose)",
        lo=0,
        hi=1,
        rows="demos",
    )
    sft_steps: int = _f(500, "SFT optimizer steps (`vlmagent sft --epochs` overrides)", lo=1, rows="sft")
    sft_batch_size: int = _f(16, "SFT rows (env steps) per optimizer step", lo=1, rows="sft")
    sft_lr: float = _f(
        1e-3, "SFT peak AdamW learning rate (linear warm-up, then cosine to a tenth)", lo=0, rows="sft"
    )
    sft_warmup: int = _f(20, "SFT warm-up steps", lo=0, rows="sft")
    sft_weight_decay: float = _f(0.0, "SFT AdamW weight decay", lo=0, rows="sft")
    sft_vision_lr_scale: float = _f(
        1.0,
        "SFT lr of the vision tower and projector as a multiple of sft_lr (when train_vision)",
        lo=0,
        rows="sft",
    )
    sft_save_every: int = _f(100, "SFT steps between resumable snapshots (model + optimizer + step)", lo=1)
    # eval
    eval_every: int = _f(0, "run eval after every N-th update in `loop` (0 = only at the end)", lo=0)
    eval_episodes: int = _f(64, "episodes per eval", lo=1)
    eval_seed: int = _f(1_000_000, "eval seeds start here: held out from training seeds", lo=0)
    eval_env: str = _f("", "env eval plays (default: env, or its held-out games for ALFWorld)")
    tracker: str = _f(
        "",
        "experiment tracker `loop` logs every iteration to: '' (none), 'tensorboard' (RUN/tensorboard/, offline)"
        " or 'wandb' (`pip install wandb`)",
    )
    # vllm backend
    tensor_parallel_size: int = _f(1, "vllm: GPUs one model is split over", lo=1)
    gpu_memory_utilization: float = _f(0.6, "vllm: share of GPU memory for weights and KV cache", lo=0, hi=1)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """run.toml (if given and present) then non-None overrides; unknown keys are an error naming them."""
    values: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        with open(path, "rb") as f:
            try:
                values = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{path}: {e}") from e
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ValueError(f"{path}: unknown config key(s) {', '.join(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = Config(**values)
    if cfg.parse_failure not in ("auto", "random", "penalty", "env"):
        raise ValueError(
            f"{path or 'config'}: parse_failure = {cfg.parse_failure!r}: expected auto, random, penalty or env"
        )
    where = f"{path}" if path is not None and Path(path).exists() else "config"
    for name, f in FIELDS.items():
        v = getattr(cfg, name)
        source = "the command line" if overrides.get(name) is not None else where
        expected = type(f.default)
        if expected is float and isinstance(v, int) and not isinstance(v, bool):
            setattr(cfg, name, v := float(v))
        elif not isinstance(v, expected):
            raise ValueError(f"{source}: {name} = {v!r} should be {expected.__name__}")
        lo, hi = f.metadata["lo"], f.metadata["hi"]
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{source}: {name} = {v!r} should be a finite number")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ValueError(f"{source}: {name} = {v!r} should be {bound}")
    for name in ("env", "eval_env"):  # before any stage builds or loads anything for it
        if getattr(cfg, name):
            try:
                env_name(getattr(cfg, name))
            except ValueError as e:
                raise ValueError(
                    f"{'the command line' if overrides.get(name) is not None else where}: {e}"
                ) from None
    if cfg.backend not in ("auto", "hf", "vllm"):
        raise ValueError(f"{where}: backend = {cfg.backend!r}: expected auto, hf or vllm")
    if cfg.tracker not in ("", "tensorboard", "wandb"):
        raise ValueError(f"{where}: tracker = {cfg.tracker!r}: expected '', tensorboard or wandb")
    if cfg.advantage not in ("gae", "grpo", "gigpo"):
        raise ValueError(f"{where}: advantage = {cfg.advantage!r}: expected gae, grpo or gigpo")
    if cfg.advantage != "gae" and cfg.group_size < 2:
        raise ValueError(f"{where}: advantage = {cfg.advantage!r} compares episodes: set group_size >= 2")
    if cfg.skip_zero_advantage and not zero_advantage_has_no_gradient(cfg):
        raise ValueError(
            f"{where}: skip_zero_advantage needs advantage = grpo or gigpo and ent_coef = 0 (a zero-advantage"
            " step still trains the value head or the entropy bonus)"
        )
    if cfg.episodes % cfg.group_size or cfg.episodes_per_shard % cfg.group_size:
        raise ValueError(
            f"{where}: group_size = {cfg.group_size} must divide episodes = {cfg.episodes} and"
            f" episodes_per_shard = {cfg.episodes_per_shard} (a group never spans two shards)"
        )
    return cfg


def settings_file(path: Path) -> dict[str, Any]:
    """A run.toml given with --config: its settings, checked, with relative paths made relative to the file
    (so `--config data/quickstart/run.toml` finds the checkpoint beside it from any directory)."""
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    load_config(path)  # unknown keys and wrong types, named
    with open(path, "rb") as f:
        values = tomllib.load(f)
    for key in ("policy", "alfworld_games"):
        v = values.get(key)
        if v and not Path(v).is_absolute() and (path.parent / v).exists():
            values[key] = str((path.parent / v).resolve())
    return values


def toml_text(values: dict[str, Any]) -> str:
    """run.toml text of these settings, one `key = value` line each, in their order."""
    lines = [f"{k} = {str(v).lower() if isinstance(v, bool) else json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def save_config(cfg: Config, path: Path) -> None:
    Path(path).write_text(toml_text(config_dict(cfg)))


def stage_config(cfg: Config, *stages: str) -> dict[str, Any]:
    """The config fields that change the rows (or checkpoint) of these stages: part of their inputs."""
    return {n: getattr(cfg, n) for n, f in FIELDS.items() if set(f.metadata["rows"]) & set(stages)}


def has_critic(cfg: Config) -> bool:
    """Whether the advantage estimator uses the value head (gae); grpo and gigpo neither score nor train it."""
    return cfg.advantage == "gae"


def zero_advantage_has_no_gradient(cfg: Config) -> bool:
    """Whether a step with a zero advantage contributes no gradient: no value loss, no entropy bonus."""
    return not has_critic(cfg) and cfg.ent_coef == 0


def config_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_hash(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(config_dict(cfg), sort_keys=True).encode()).hexdigest()[:12]
