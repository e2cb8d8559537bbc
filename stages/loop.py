"""loop: the on-policy loop, collect -> score -> update, until ckpt/<iterations> exists, then eval.

Every step is a stage that skips what is already on disk, so a rerun after a kill continues where
it stopped. Policy k collects iter/k, is scored by itself, and its update writes ckpt/k+1. Held-out
evals, into eval/k: of the start (the "before" of the learning curve), after every `eval_every`-th
update, and of the last policy. With a `tracker`, each iteration's records are logged as they land.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vlmagent.config import Config
from vlmagent.rundir import (
    ckpt_dir,
    current_policy,
    eval_dir,
    latest_ckpt,
    rollouts_dir,
    scored_dir,
    update_json,
)
from vlmagent.stages import collect, score, update
from vlmagent.stages.eval import evaluate, summarize
from vlmagent.stages.tracking import check_installed, log_new

Echo = Callable[[str], None]


def iteration(cfg: Config, run_dir: Path, k: int, echo: Echo) -> None:
    """collect with policy k, score, update to ckpt/k+1; one line on how it went."""
    policy = str(ckpt_dir(run_dir, k))
    collect.play(cfg, policy, rollouts_dir(run_dir, k), iteration=k)
    score.run(cfg, rollouts_dir(run_dir, k), policy, scored_dir(run_dir, k))
    stats = update.run(
        cfg, scored_dir(run_dir, k), policy, ckpt_dir(run_dir, k + 1), report=update_json(run_dir, k)
    )
    train = summarize(rollouts_dir(run_dir, k))
    echo(
        f"iteration {k}: success {train['success_rate']:.3f}, return {train['mean_return']:.3f}, "
        f"parse failures {train['parse_failure_rate']:.3f}, approx_kl {stats['approx_kl']:.2e}, "
        f"clipfrac {stats['clipfrac']:.3f}"
    )


def run(cfg: Config, run_dir: Path, iterations: int, echo: Echo = lambda _: None) -> None:
    """Eval the start, iterate until ckpt/<iterations> exists, then eval the last policy (no-ops where done)."""
    check_installed(cfg.tracker)  # before any work: a missing tracker package is exit 2, not a late crash
    current_policy(cfg, run_dir, echo)
    start = evaluate(cfg, str(ckpt_dir(run_dir, 0)), eval_dir(run_dir, 0))
    assert start is not None  # one worker: its summary is written
    echo(
        f"start: held-out success {start['success_rate']:.3f}, parse failures "
        f"{start['parse_failure_rate']:.3f} ({start['episodes']} episodes)"
    )
    log_new(run_dir, cfg.tracker, cfg.run_name)
    while (k := latest_ckpt(run_dir) or 0) < iterations:
        iteration(cfg, run_dir, k, echo)
        if cfg.eval_every and (k + 1) % cfg.eval_every == 0 and k + 1 < iterations:
            evaluate(cfg, str(ckpt_dir(run_dir, k + 1)), eval_dir(run_dir, k + 1))
        log_new(run_dir, cfg.tracker, cfg.run_name)
    final = latest_ckpt(run_dir) or 0
    evaluate(cfg, str(ckpt_dir(run_dir, final)), eval_dir(run_dir, final))
    log_new(run_dir, cfg.tracker, cfg.run_name)
