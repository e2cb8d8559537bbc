"""The run directory layout: where each stage finds its inputs and writes its outputs."""

from __future__ import annotations

from pathlib import Path

RUN_TOML = "run.toml"


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
