"""The run directory layout (design.md): where each stage finds its inputs and writes its outputs."""

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
