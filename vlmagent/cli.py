"""The `vlmagent` command: a thin Typer layer over the stage functions in `stages/`.

Exit codes: 0 success, 2 bad input (one red line saying what), 1 a failure.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vlmagent.config import Config, load_config, save_config
from vlmagent.rundir import RUN_TOML, latest_ckpt, rollouts_dir
from vlmagent.shards import ShardError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Fine-tune vision-language models as decision-making agents with PPO.",
)
console = Console()
err = Console(stderr=True)


class UserError(Exception):
    """A mistake in the command line or its inputs: exit 2 with one line."""


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    try:
        yield
    except (UserError, ShardError, ValueError, FileNotFoundError) as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None


def _config(run: Path | None, **overrides: Any) -> Config:
    """run.toml of the run (created from the flags on first use) with the flags on top."""
    if run is None:
        return load_config(None, **overrides)
    toml = run / RUN_TOML
    cfg = load_config(toml, **overrides)
    if not cfg.run_name:
        cfg.run_name = run.name
    if not toml.exists():
        run.mkdir(parents=True, exist_ok=True)
        save_config(cfg, toml)
        console.print(f"created {toml}")
    return cfg


def _parse_shards(spec: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise UserError(f"--shards {spec!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise UserError(f"--shards {spec!r}: need 0 <= i < n")
    return i, n


def _make_actor(cfg: Config, policy: str) -> tuple[Any, str]:
    from stages import collect

    if policy == "oracle":
        return collect.oracle_actor(cfg.env, cfg.cot), "oracle"
    if policy == "random":
        return collect.random_actor(), "random"
    raise UserError(f"--policy {policy!r}: model policies are not available yet; use oracle or random")


def _print_summary(title: str, summary: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console.print(table)


EnvOpt = Annotated[str | None, typer.Option(help="env short name: numberline, ezpoints, points24, blackjack")]
RunOpt = Annotated[Path | None, typer.Option(help="run directory (holds run.toml, ckpt/, iter/, eval/)")]
SeedOpt = Annotated[int | None, typer.Option(help="seed; episodes and sampling derive from it")]
CotOpt = Annotated[bool | None, typer.Option("--cot/--no-cot", help="chain-of-thought prompt or action-only")]


@app.command()
def collect(
    env: EnvOpt = None,
    policy: Annotated[str | None, typer.Option(help="checkpoint dir, oracle or random")] = None,
    out: Annotated[
        Path | None, typer.Option(help="output directory (default: the run's iter/k/rollouts)")
    ] = None,
    run: RunOpt = None,
    episodes: Annotated[int | None, typer.Option(help="episodes to collect")] = None,
    seed: SeedOpt = None,
    num_envs: Annotated[int | None, typer.Option(help="envs stepped side by side")] = None,
    cot: CotOpt = None,
    shards: Annotated[str, typer.Option(help="i/n: collect only shards s with s % n == i")] = "0/1",
) -> None:
    """Run envs with a policy; write one Parquet row per env step."""
    from stages import collect as collect_stage

    with cli_errors():
        if run is None and out is None:
            run = Path("runs") / (env or "blackjack")
        cfg = _config(run, env=env, episodes=episodes, seed=seed, num_envs=num_envs, cot=cot)
        k = (latest_ckpt(run) or 0) if run is not None else 0
        out = out or rollouts_dir(run, k)  # type: ignore[arg-type]
        actor, version = _make_actor(cfg, policy or "oracle")
        manifest = collect_stage.run(cfg, out, actor, version, iteration=k, worker=_parse_shards(shards))
        if manifest is None:
            console.print(f"wrote this worker's shards to {out}; other workers' shards are still missing")
            return
        from stages.eval import summarize

        _print_summary(f"collect {cfg.env} -> {out}", summarize(out))


@app.command("eval")
def eval_(
    env: EnvOpt = None,
    policy: Annotated[str, typer.Option(help="checkpoint dir, oracle or random")] = "oracle",
    episodes: Annotated[int | None, typer.Option(help="episodes to play")] = None,
    out: Annotated[Path | None, typer.Option(help="output directory")] = None,
    run: RunOpt = None,
    seed: SeedOpt = None,
    cot: CotOpt = None,
) -> None:
    """Play seeded held-out episodes and summarise success rate, return and parse failures."""
    from stages import eval as eval_stage

    with cli_errors():
        if out is None:
            raise UserError("--out is required")
        cfg = _config(run, env=env, eval_episodes=episodes, cot=cot)
        cfg.episodes = cfg.eval_episodes
        actor, version = _make_actor(cfg, policy)
        summary = eval_stage.run(cfg, out, actor, version, seed=seed)
        _print_summary(f"eval {cfg.env} ({version})", summary)
        console.print(f"summary: {out / eval_stage.SUMMARY}")


@app.command()
def config(run: RunOpt = None) -> None:
    """Print the effective config of a run (or the defaults) as JSON."""
    from vlmagent.config import config_dict

    with cli_errors():
        cfg = load_config(run / RUN_TOML if run else None)
        console.print_json(json.dumps(config_dict(cfg)))


if __name__ == "__main__":
    app()
