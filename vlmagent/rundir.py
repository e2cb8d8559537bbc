"""The run directory layout: where each stage finds its inputs and writes its outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmagent.config import Config, config_dict, load_config, save_config, settings_file

RUN_TOML = "run.toml"


def run_config(
    run: Path | None, config_file: Path | None = None, echo: Callable[[str], None] = print, **overrides: Any
) -> Config:
    """run.toml of the run (created on first use from --config's file, then the flags) with the flags on top.

    A run keeps the settings it was created with: --config on an existing run must agree with its run.toml."""
    settings = settings_file(config_file) if config_file else {}
    overrides = {**settings, **{k: v for k, v in overrides.items() if v is not None}}
    if run is None:
        return load_config(None, **overrides)
    toml = run / RUN_TOML
    if settings and toml.exists():
        saved = config_dict(load_config(toml))
        for key, v in settings.items():
            if saved[key] != v:
                raise ValueError(
                    f"--config {config_file}: {key} = {v!r}, but {toml} has {saved[key]!r}"
                    " (a run keeps its settings: give another --run)"
                )
    cfg = load_config(toml, **overrides)
    if not cfg.run_name:
        cfg.run_name = run.name
    if not toml.exists():
        run.mkdir(parents=True, exist_ok=True)
        save_config(cfg, toml)
        echo(f"created {toml}")
    return cfg


def ckpt_dir(run: Path, k: int) -> Path:
    return Path(run) / "ckpt" / f"{k:06d}"


def rollouts_dir(run: Path, k: int) -> Path:
    return Path(run) / "iter" / f"{k:06d}" / "rollouts"


def scored_dir(run: Path, k: int) -> Path:
    return Path(run) / "iter" / f"{k:06d}" / "scored"


def update_json(run: Path, k: int) -> Path:
    return Path(run) / "iter" / f"{k:06d}" / "update.json"


def eval_dir(run: Path, k: int) -> Path:
    return Path(run) / "eval" / f"{k:06d}"


def default_run(run: Path | None, env: str | None, out: Path | None = None) -> Path | None:
    """--run, else runs/<env> (blackjack without an env), else None where --out says where the output goes."""
    return run if run is not None or out is not None else Path("runs") / (env or "blackjack")


def latest_ckpt(run: Path) -> int | None:
    """Index of the newest complete checkpoint (temp dirs start with '.', so they never count)."""
    root = Path(run) / "ckpt"
    if not root.is_dir():
        return None
    ks = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(ks) if ks else None


def ensure_initial_checkpoint(cfg, run: Path) -> Path:
    """ckpt/000000 of a run: the tiny model (init-model) when cfg.policy is empty, else a copy of it.

    With cfg.lora the copy is LoRA adapters on cfg.policy (or on the tiny model, built into run/base).
    """
    from vlmagent.policy.checkpoint import save_checkpoint
    from vlmagent.policy.load import load_policy
    from vlmagent.policy.lora import with_lora
    from vlmagent.policy.tiny import init_model

    dest = ckpt_dir(run, 0)
    if dest.exists():
        return dest
    if not cfg.policy and not cfg.lora:
        return init_model(dest, seed=cfg.seed)
    source = str(Path(cfg.policy).resolve()) if cfg.policy and Path(cfg.policy).exists() else cfg.policy
    if not source:
        base = run / "base"
        source = str((base if base.exists() else init_model(base, seed=cfg.seed)).resolve())
    p = with_lora(load_policy(source), cfg)
    meta = {"step": 0, "parent": None, "source": source}
    return save_checkpoint(dest, p, meta)


def current_policy(cfg: Config, run: Path, echo: Callable[[str], None]) -> tuple[int, Path]:
    """The run's newest checkpoint; ckpt/000000 is made first from cfg.policy (or the tiny model)."""
    k = latest_ckpt(run)
    if k is None:
        path = ensure_initial_checkpoint(cfg, run)
        echo(f"initial policy: {path} ({cfg.policy or 'tiny model from init-model'})")
        return 0, path
    return k, ckpt_dir(run, k)


def policy_or_current(
    cfg: Config, run: Path | None, policy: str | None, echo: Callable[[str], None], missing: str
) -> tuple[int, str]:
    """A given policy (iteration 0), else the run's current one (see current_policy); ValueError(missing)
    when there is neither (the stage's message names its flags)."""
    if policy is not None:
        return 0, policy
    if run is None:
        raise ValueError(missing)
    k, path = current_policy(cfg, run, echo)
    return k, str(path)
