"""The `vlmagent` command: a thin Typer layer that parses flags, loads the config and calls the stages
(`stages/`, installed as vlmagent.stages).

Exit codes: 0 success, 2 bad input (one red line saying what), 1 a failure (one line for a fault of the
machine: a full disk, out of memory; the stages' own failures, e.g. a NaN loss).
"""

from __future__ import annotations

import contextlib
import errno
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from transformers.utils import logging as hf_logging
from typer import Argument as Arg
from typer import Option as Opt

from vlmagent.config import Config, config_dict, load_config
from vlmagent.policy.checkpoint import CheckpointError
from vlmagent.rundir import RUN_TOML, default_run, run_config
from vlmagent.shards import ShardError
from vlmagent.stages import collect as collect_stage
from vlmagent.stages import demos as demos_stage
from vlmagent.stages import eval as eval_stage
from vlmagent.stages import loop as loop_stage
from vlmagent.stages import report as report_stage
from vlmagent.stages import score as score_stage
from vlmagent.stages import sft as sft_stage
from vlmagent.stages import update as update_stage
from vlmagent.stages.tracking import check_installed, log_new

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Fine-tune vision-language models as decision-making agents with PPO.",
)
# soft_wrap: a message is one line however long (paths stay whole); tables piped to a file or a log get
# 160 columns, not rich's default 80 that cuts the report's columns to "0.…"
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)
hf_logging.disable_progress_bar()  # a bar per model load and save: noise between the stages' own bars


class UserError(Exception):
    """A mistake in the command line or its inputs: exit 2 with one line."""


# OSErrors that are the machine's fault, not the input's: exit 1, not 2
MACHINE_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM}


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    try:
        yield
    except (MemoryError, update_stage.UpdateError) as e:  # a failure, not bad input: one line all the same
        err.print(f"[red]error:[/] {str(e) or type(e).__name__}", highlight=False)
        raise typer.Exit(1) from None
    except (UserError, ShardError, CheckpointError, ValueError, OSError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(1 if isinstance(e, OSError) and e.errno in MACHINE_FAULTS else 2) from None


def _config(run: Path | None, config_file: Path | None = None, **overrides: Any) -> Config:
    return run_config(run, config_file, console.print, **overrides)


def _print_partial(out: Path) -> None:
    """What a `--shards i/n` worker says when it is not the one that finishes the directory."""
    console.print(f"wrote this worker's shards to {out}; other workers' shards are still missing")


def _parse_shards(spec: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UserError(f"--shards {spec!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise UserError(f"--shards {spec!r}: need 0 <= i < n")
    return i, n


def _print_summary(title: str, summary: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console.print(table)


EnvOpt = Annotated[str | None, Opt(help="env short name: numberline, ezpoints, points24, blackjack")]
RunOpt = Annotated[Path | None, Opt(help="run directory (holds run.toml, ckpt/, iter/, eval/)")]
SeedOpt = Annotated[int | None, Opt(help="seed; episodes and sampling derive from it")]
CotOpt = Annotated[bool | None, Opt("--cot/--no-cot", help="chain-of-thought prompt or action-only")]
MaxNewTokensOpt = Annotated[int | None, Opt(help="max tokens generated per step")]
OverwriteOpt = Annotated[
    bool,
    Opt(help="delete the output made from other inputs and start over (else: exit 2 naming the difference)"),
]


def _at_least(flag: str, value: int | float | None, lo: int) -> None:
    """A flag that does not go through the config (whose fields load_config checks)."""
    if value is not None and not value >= lo:  # `not >=`: NaN fails too
        raise UserError(f"{flag} {value}: expected at least {lo}")


@app.command("init-model")
def init_model_cmd(
    out: Annotated[Path, Arg(help="directory to write the model to")],
    size: Annotated[str, Opt(help="tiny (a few M params) or small (tens of M)")] = "tiny",
    seed: Annotated[int, Opt(help="weight initialisation seed")] = 0,
    image_size: Annotated[int, Opt(help="image processor size in pixels")] = 112,
    patch_size: Annotated[int, Opt(help="vision patch size in pixels")] = 14,
) -> None:
    """Build a randomly initialised LLaVA-architecture model with our own tokenizer (offline)."""
    from vlmagent.policy.tiny import SIZES, init_model

    with cli_errors():
        _at_least("--seed", seed, 0)
        _at_least("--image-size", image_size, 8)
        _at_least("--patch-size", patch_size, 1)
        if size not in SIZES:
            raise UserError(f"--size {size!r}: expected one of {', '.join(SIZES)}")
        if out.exists():
            raise UserError(f"{out} exists")
        console.print(
            f"wrote {init_model(out, size=size, seed=seed, image_size=image_size, patch_size=patch_size)}"
        )


@app.command("alfworld-games")
def alfworld_games(
    out: Annotated[Path, Arg(help="directory to write the games to (e.g. GAMES/train)")],
    per_type: Annotated[int, Opt(help="games per task type (six types)")] = 4,
    seed: Annotated[int, Opt(help="generator seed (the shipped games: 0 train, 1 heldout)")] = 0,
) -> None:
    """Generate ALFWorld games of our own, each verified by playing its walkthrough to won.

    Point a run at them with run.toml's alfworld_games = GAMES (holding train/ and heldout/).
    """
    from rich.progress import Progress

    from vlmagent.envs.alfworld import INSTALL_HINT, TASK_TYPES, engine_available
    from vlmagent.envs.alfworld_games import generate_games

    with cli_errors():
        if not engine_available():
            raise UserError(INSTALL_HINT)
        if per_type < 1:
            raise UserError(f"--per-type {per_type}: expected at least 1")
        with Progress(transient=True) as progress:
            task = progress.add_task("games", total=per_type * len(TASK_TYPES))
            games = generate_games(out, per_type, seed, on_game=lambda _: progress.advance(task))
        console.print(f"wrote {len(games)} games to {out}")


@app.command()
def collect(
    env: EnvOpt = None,
    policy: Annotated[str | None, Opt(help="checkpoint dir, HF model, oracle or random")] = None,
    out: Annotated[Path | None, Opt(help="output dir (default: the run's iter/k/rollouts)")] = None,
    run: RunOpt = None,
    episodes: Annotated[int | None, Opt(help="episodes to collect")] = None,
    seed: SeedOpt = None,
    num_envs: Annotated[int | None, Opt(help="envs stepped side by side")] = None,
    temperature: Annotated[float | None, Opt(help="sampling temperature")] = None,
    max_new_tokens: MaxNewTokensOpt = None,
    backend: Annotated[str | None, Opt(help="auto, hf or vllm")] = None,
    cot: CotOpt = None,
    shards: Annotated[str, Opt(help="i/n: collect only shards s with s % n == i")] = "0/1",
    overwrite: OverwriteOpt = False,
) -> None:
    """Run envs with a policy; write one Parquet row per env step."""

    with cli_errors():
        run = default_run(run, env, out)
        cfg = _config(
            run, env=env, episodes=episodes, seed=seed, num_envs=num_envs, cot=cot,
            temperature=temperature, max_new_tokens=max_new_tokens, backend=backend,
        )  # fmt: skip
        k, policy, out = collect_stage.resolve(cfg, run, policy, out, console.print)
        worker = _parse_shards(shards)
        manifest = collect_stage.play(cfg, policy, out, iteration=k, worker=worker, overwrite=overwrite)
        if manifest is None:
            _print_partial(out)
            return
        _print_summary(f"collect {cfg.env} -> {out}", eval_stage.summarize(out))


@app.command()
def score(
    rollouts: Annotated[Path | None, Opt(help="collected shards (default: run's iter/k/rollouts)")] = None,
    policy: Annotated[str | None, Opt(help="checkpoint that scores (default: run's ckpt/k)")] = None,
    out: Annotated[Path | None, Opt(help="output dir (default: run's iter/k/scored)")] = None,
    run: RunOpt = None,
    batch_size: Annotated[int, Opt(help="steps per forward pass")] = 8,
    overwrite: OverwriteOpt = False,
) -> None:
    """Values, old log-probs and GAE advantages for every collected step."""
    with cli_errors():
        _at_least("--batch-size", batch_size, 1)
        cfg = _config(run)
        rollouts, policy, out = score_stage.resolve(run, rollouts, policy, out)
        manifest = score_stage.run(cfg, rollouts, policy, out, batch_size=batch_size, overwrite=overwrite)
        gap = manifest.get("logprob_gap_mean")
        console.print(
            f"scored {manifest['rows']} steps -> {out}; sampler-vs-trainer log-prob gap per token: "
            + (f"mean {gap:.2e}, max {manifest['logprob_gap_max']:.2e}" if gap is not None else "n/a")
        )


@app.command()
def update(
    scored: Annotated[Path | None, Opt(help="scored shards (default: run's iter/k/scored)")] = None,
    policy: Annotated[Path | None, Opt(help="checkpoint to start from (default: run's ckpt/k)")] = None,
    out: Annotated[Path | None, Opt(help="checkpoint to write (default: run's ckpt/k+1)")] = None,
    run: RunOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """PPO epochs on the scored steps; writes the next checkpoint."""
    with cli_errors():
        cfg = _config(run)
        scored, policy, out, report = update_stage.resolve(run, scored, policy, out)
        stats = update_stage.run(cfg, scored, policy, out, report=report, overwrite=overwrite)
        _print_summary(f"update -> {out}", {k: v for k, v in stats.items() if isinstance(v, int | float)})


@app.command("eval")
def eval_(
    env: EnvOpt = None,
    policy: Annotated[str | None, Opt(help="checkpoint, oracle or random (default: run's latest)")] = None,
    episodes: Annotated[int | None, Opt(help="episodes to play")] = None,
    out: Annotated[Path | None, Opt(help="output directory (default: the run's eval/k)")] = None,
    run: RunOpt = None,
    seed: SeedOpt = None,
    temperature: Annotated[float | None, Opt(help="0 = greedy")] = None,
    cot: CotOpt = None,
    shards: Annotated[str, Opt(help="i/n: play only shards s with s % n == i")] = "0/1",
    overwrite: OverwriteOpt = False,
) -> None:
    """Play seeded held-out episodes and summarise success rate, return and parse failures."""

    with cli_errors():
        _at_least("--seed", seed, 0)  # eval's seed is not the run's: it does not go through the config
        worker = _parse_shards(shards)
        cfg = _config(run, env=env, eval_episodes=episodes, cot=cot, temperature=temperature)
        policy, out = eval_stage.resolve(cfg, run, policy, out, console.print)
        summary = eval_stage.evaluate(cfg, policy, out, seed, worker=worker, overwrite=overwrite)
        if summary is None:
            _print_partial(out)
            return
        _print_summary(f"eval {cfg.env} ({policy})", summary)
        console.print(f"summary: {out / 'summary.json'}")


ConfigOpt = Annotated[
    Path | None, Opt("--config", help="a run.toml to create the run from (relative paths in it: to the file)")
]


@app.command()
def loop(
    env: EnvOpt = None,
    run: RunOpt = None,
    config_file: ConfigOpt = None,
    iterations: Annotated[int, Opt(help="run until ckpt/<iterations> exists")] = 2,
    episodes: Annotated[int | None, Opt(help="episodes collected per iteration")] = None,
    max_new_tokens: MaxNewTokensOpt = None,
    eval_every: Annotated[int | None, Opt(help="eval after every N-th update (0: at the end)")] = None,
    eval_episodes: Annotated[int | None, Opt(help="episodes per eval")] = None,
    seed: SeedOpt = None,
) -> None:
    """Eval the start, then collect -> score -> update, K times, then eval. Rerun after a kill: it continues."""
    with cli_errors():
        _at_least("--iterations", iterations, 0)
        run = default_run(run, env)
        cfg = _config(
            run, config_file, env=env, episodes=episodes, max_new_tokens=max_new_tokens,
            eval_every=eval_every, eval_episodes=eval_episodes, seed=seed,
        )  # fmt: skip
        loop_stage.run(cfg, run, iterations, echo=console.print)
        report_stage.show(run, console.print, with_before_after=True)


@app.command()
def config(run: RunOpt = None) -> None:
    """Print the effective config of a run (or the defaults) as JSON."""
    with cli_errors():
        cfg = load_config(run / RUN_TOML if run else None)
        console.print_json(json.dumps(config_dict(cfg)))


@app.command()
def demos(
    env: EnvOpt = None,
    episodes: Annotated[int | None, Opt(help="demo episodes")] = None,
    out: Annotated[Path | None, Opt(help="output directory (default: the run's demos/)")] = None,
    run: RunOpt = None,
    random_frac: Annotated[float | None, Opt(help="share of steps with a random legal action")] = None,
    seed: Annotated[int | None, Opt(help="demo seed (default: the run seed + 500000)")] = None,
    cot: CotOpt = None,
) -> None:
    """Oracle episodes as trajectory shards (responses in the prompt's format) for `sft`."""
    with cli_errors():
        _at_least("--seed", seed, 0)  # the demo seed (default: the run seed's offset), not the config's
        out = demos_stage.resolve(run, out)
        cfg = _config(run, env=env, episodes=episodes, cot=cot, demo_random_frac=random_frac)
        demos_stage.run(cfg, out, seed)
        _print_summary(f"demos {cfg.env} -> {out}", eval_stage.summarize(out))


@app.command()
def sft(
    data: Annotated[list[Path], Opt(help="trajectory stage dir(s) to train on (repeatable)")],
    policy: Annotated[str, Opt(help="checkpoint (or HF model dir) to start from")],
    out: Annotated[Path, Opt(help="checkpoint to write")],
    run: RunOpt = None,
    steps: Annotated[int | None, Opt(help="optimizer steps")] = None,
    epochs: Annotated[float | None, Opt(help="passes over the data (overrides --steps)")] = None,
    lr: Annotated[float | None, Opt(help="peak AdamW learning rate")] = None,
    batch_size: Annotated[int | None, Opt(help="rows per optimizer step")] = None,
    seed: SeedOpt = None,
    facts_only: Annotated[bool, Opt(help="targets cut to the image facts: a reading warm-up")] = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Supervised fine-tuning on response tokens; resumable (rerun after a kill continues)."""
    with cli_errors():
        if epochs is not None and not (0 < epochs < float("inf")):
            raise UserError(f"--epochs {epochs}: expected a finite number > 0")
        cfg = _config(run, sft_steps=steps, sft_lr=lr, sft_batch_size=batch_size, seed=seed)
        stats = sft_stage.run(
            cfg, data, policy, out, epochs=epochs, facts_only=facts_only, overwrite=overwrite
        )
        _print_summary(f"sft -> {out}", {k: v for k, v in stats.items() if isinstance(v, int | float)})
        console.print(f"loss curve: {out / sft_stage.LOSS_PNG}")


@app.command()
def report(
    run: Annotated[Path, Arg(help="run directory")],
    png: Annotated[Path | None, Opt(help="learning-curve PNG (default: RUN/learning_curve.png)")] = None,
    tracker: Annotated[
        str | None, Opt(help="also log what the tracker has not got: tensorboard or wandb")
    ] = None,
) -> None:
    """Success, return, parse failures, clip fraction and approx KL per iteration; learning-curve PNG."""
    with cli_errors():
        report_stage.show(run, console.print, png)
        if tracker is not None:
            if tracker not in ("tensorboard", "wandb"):
                raise UserError(f"--tracker {tracker!r}: expected tensorboard or wandb")
            check_installed(tracker)
            console.print(f"{tracker}: {log_new(run, tracker)} new records")


if __name__ == "__main__":
    app()
