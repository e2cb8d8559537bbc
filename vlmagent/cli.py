"""The `vlmagent` command: a thin Typer layer over the stage functions in `stages/`.

Exit codes: 0 success, 2 bad input (one red line saying what), 1 a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vlmagent.config import Config, load_config, save_config
from vlmagent.policy.checkpoint import CheckpointError
from vlmagent.rundir import (
    RUN_TOML,
    ckpt_dir,
    eval_dir,
    latest_ckpt,
    rollouts_dir,
    scored_dir,
    update_json,
)
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
    except (UserError, ShardError, CheckpointError, ValueError, OSError) as e:
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


@contextlib.contextmanager
def _served(cfg: Config, policy: str) -> Iterator[tuple[Any, str]]:
    """The actor playing `policy` (oracle, random, or a checkpoint / HF model dir / hub id served by the
    configured backend) and its version. The backend is closed on exit: a vLLM engine runs in processes
    of its own that keep their GPU memory (weights, KV cache) until closed, even once nothing refers to
    the engine, and `loop` runs score and update next, in this process, on the same GPU."""
    from vlmagent.stages import collect

    if policy == "oracle":
        yield collect.oracle_actor(cfg.env, cfg.cot), "oracle"
        return
    if policy == "random":
        yield collect.random_actor(), "random"
        return
    import torch

    from vlmagent.rollout import make_backend

    if torch.cuda.is_available():  # a vLLM engine starts only if its gpu_memory_utilization share is
        torch.cuda.empty_cache()  # free: give back what the last update left in this process's cache
    vllm_options = {
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
    }
    backend = make_backend(cfg.backend, policy, **vllm_options)
    try:
        processor = getattr(backend, "processor", None) or backend.policy.processor  # type: ignore[attr-defined]
        yield collect.model_actor(cfg, backend, processor), policy
    finally:
        backend.close()


def _current_policy(cfg: Config, run: Path) -> tuple[int, Path]:
    """The run's newest checkpoint; ckpt/000000 is made first from cfg.policy (or the tiny model)."""
    from vlmagent.rundir import ensure_initial_checkpoint

    k = latest_ckpt(run)
    if k is None:
        path = ensure_initial_checkpoint(cfg, run)
        console.print(f"initial policy: {path} ({cfg.policy or 'tiny model from init-model'})")
        return 0, path
    return k, ckpt_dir(run, k)


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


@app.command("init-model")
def init_model_cmd(
    out: Annotated[Path, typer.Argument(help="directory to write the model to")],
    size: Annotated[str, typer.Option(help="tiny (a few M params) or small (tens of M)")] = "tiny",
    seed: Annotated[int, typer.Option(help="weight initialisation seed")] = 0,
    image_size: Annotated[int, typer.Option(help="image processor size in pixels")] = 112,
    patch_size: Annotated[
        int, typer.Option(help="vision patch size in pixels (image_size / patch_size squared image tokens)")
    ] = 14,
) -> None:
    """Build a randomly initialised LLaVA-architecture model with our own tokenizer (offline)."""
    from vlmagent.policy.tiny import SIZES, init_model

    with cli_errors():
        if size not in SIZES:
            raise UserError(f"--size {size!r}: expected one of {', '.join(SIZES)}")
        if out.exists():
            raise UserError(f"{out} exists")
        console.print(
            f"wrote {init_model(out, size=size, seed=seed, image_size=image_size, patch_size=patch_size)}"
        )


@app.command("alfworld-games")
def alfworld_games(
    out: Annotated[Path, typer.Argument(help="directory to write the games to (e.g. GAMES/train)")],
    per_type: Annotated[int, typer.Option(help="games per task type (six types)")] = 4,
    seed: Annotated[int, typer.Option(help="generator seed (the shipped games: 0 train, 1 heldout)")] = 0,
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
    policy: Annotated[str | None, typer.Option(help="checkpoint dir, HF model, oracle or random")] = None,
    out: Annotated[
        Path | None, typer.Option(help="output directory (default: the run's iter/k/rollouts)")
    ] = None,
    run: RunOpt = None,
    episodes: Annotated[int | None, typer.Option(help="episodes to collect")] = None,
    seed: SeedOpt = None,
    num_envs: Annotated[int | None, typer.Option(help="envs stepped side by side")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="max tokens generated per step")] = None,
    backend: Annotated[str | None, typer.Option(help="auto, hf or vllm")] = None,
    cot: CotOpt = None,
    shards: Annotated[str, typer.Option(help="i/n: collect only shards s with s % n == i")] = "0/1",
) -> None:
    """Run envs with a policy; write one Parquet row per env step."""
    from vlmagent.stages import collect as collect_stage
    from vlmagent.stages.eval import summarize

    with cli_errors():
        if run is None and out is None:
            run = Path("runs") / (env or "blackjack")
        cfg = _config(
            run, env=env, episodes=episodes, seed=seed, num_envs=num_envs, cot=cot,
            temperature=temperature, max_new_tokens=max_new_tokens, backend=backend,
        )  # fmt: skip
        k = 0
        if policy is None:
            if run is None:
                raise UserError("--policy is required with --out and no --run")
            k, path = _current_policy(cfg, run)
            policy = str(path)
        out = out or rollouts_dir(run, k)  # type: ignore[arg-type]
        with _served(cfg, policy) as (actor, version):
            manifest = collect_stage.run(cfg, out, actor, version, iteration=k, worker=_parse_shards(shards))
        if manifest is None:
            _print_partial(out)
            return
        _print_summary(f"collect {cfg.env} -> {out}", summarize(out))


@app.command()
def score(
    rollouts: Annotated[
        Path | None, typer.Option(help="collected shards (default: the run's iter/k/rollouts)")
    ] = None,
    policy: Annotated[
        str | None, typer.Option(help="checkpoint that scores (default: the run's ckpt/k)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output directory (default: the run's iter/k/scored)")
    ] = None,
    run: RunOpt = None,
    batch_size: Annotated[int, typer.Option(help="steps per forward pass")] = 8,
) -> None:
    """Values, old log-probs and GAE advantages for every collected step."""
    from vlmagent.stages import score as score_stage

    with cli_errors():
        cfg = _config(run)
        if run is not None:
            k = latest_ckpt(run) or 0
            rollouts, out = rollouts or rollouts_dir(run, k), out or scored_dir(run, k)
            policy = policy or str(ckpt_dir(run, k))
        if rollouts is None or out is None or policy is None:
            raise UserError("give --run, or all of --rollouts, --policy and --out")
        manifest = score_stage.run(cfg, rollouts, policy, out, batch_size=batch_size)
        gap = manifest.get("logprob_gap_mean")
        console.print(
            f"scored {manifest['rows']} steps -> {out}; sampler-vs-trainer log-prob gap per token: "
            + (f"mean {gap:.2e}, max {manifest['logprob_gap_max']:.2e}" if gap is not None else "n/a")
        )


@app.command()
def update(
    scored: Annotated[
        Path | None, typer.Option(help="scored shards (default: the run's iter/k/scored)")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option(help="checkpoint to start from (default: the run's ckpt/k)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="checkpoint to write (default: the run's ckpt/k+1)")
    ] = None,
    run: RunOpt = None,
) -> None:
    """PPO epochs on the scored steps; writes the next checkpoint."""
    from vlmagent.stages import update as update_stage

    with cli_errors():
        cfg = _config(run)
        report = None
        if run is not None:
            k = latest_ckpt(run) or 0
            scored, policy = scored or scored_dir(run, k), policy or ckpt_dir(run, k)
            out, report = out or ckpt_dir(run, k + 1), update_json(run, k)
        if scored is None or out is None or policy is None:
            raise UserError("give --run, or all of --scored, --policy and --out")
        stats = update_stage.run(cfg, scored, policy, out, report=report)
        _print_summary(f"update -> {out}", {k: v for k, v in stats.items() if isinstance(v, int | float)})


@app.command("eval")
def eval_(
    env: EnvOpt = None,
    policy: Annotated[
        str | None, typer.Option(help="checkpoint dir, oracle or random (default: the run's latest)")
    ] = None,
    episodes: Annotated[int | None, typer.Option(help="episodes to play")] = None,
    out: Annotated[Path | None, typer.Option(help="output directory (default: the run's eval/k)")] = None,
    run: RunOpt = None,
    seed: SeedOpt = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy")] = None,
    cot: CotOpt = None,
    shards: Annotated[str, typer.Option(help="i/n: play only shards s with s % n == i")] = "0/1",
) -> None:
    """Play seeded held-out episodes and summarise success rate, return and parse failures."""

    with cli_errors():
        cfg = _config(run, env=env, eval_episodes=episodes, cot=cot, temperature=temperature)
        k = 0
        if policy is None:
            if run is None:
                raise UserError("give --policy (a checkpoint, oracle or random) or --run")
            k, path = _current_policy(cfg, run)
            policy = str(path)
        if out is None:
            if run is None:
                raise UserError("--out is required without --run")
            out = eval_dir(run, k)
        summary = _eval(cfg, policy, out, seed, worker=_parse_shards(shards))
        if summary is None:
            _print_partial(out)
            return
        _print_summary(f"eval {cfg.env} ({policy})", summary)
        console.print(f"summary: {out / 'summary.json'}")


def _eval(
    cfg: Config, policy: str, out: Path, seed: int | None = None, worker: tuple[int, int] = (0, 1)
) -> dict[str, Any] | None:
    from vlmagent.stages import eval as eval_stage

    cfg = dataclasses.replace(cfg, episodes=cfg.eval_episodes)
    with _served(cfg, policy) as (actor, version):
        return eval_stage.run(cfg, out, actor, version, seed=seed, worker=worker)


@app.command()
def loop(
    env: EnvOpt = None,
    run: RunOpt = None,
    iterations: Annotated[int, typer.Option(help="run until ckpt/<iterations> exists")] = 2,
    episodes: Annotated[int | None, typer.Option(help="episodes collected per iteration")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="max tokens generated per step")] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="eval after every N-th update (0 = at the end)")
    ] = None,
    eval_episodes: Annotated[int | None, typer.Option(help="episodes per eval")] = None,
) -> None:
    """collect -> score -> update, K times (then eval). Rerun after a kill: it continues where it stopped."""
    from vlmagent.stages import collect as collect_stage
    from vlmagent.stages import score as score_stage
    from vlmagent.stages import update as update_stage
    from vlmagent.stages.eval import summarize

    with cli_errors():
        run = run or Path("runs") / (env or "blackjack")
        cfg = _config(
            run, env=env, episodes=episodes, max_new_tokens=max_new_tokens,
            eval_every=eval_every, eval_episodes=eval_episodes,
        )  # fmt: skip
        _current_policy(cfg, run)
        while (k := latest_ckpt(run) or 0) < iterations:
            policy = str(ckpt_dir(run, k))
            with _served(cfg, policy) as (actor, version):
                collect_stage.run(cfg, rollouts_dir(run, k), actor, version, iteration=k)
            score_stage.run(cfg, rollouts_dir(run, k), policy, scored_dir(run, k))
            stats = update_stage.run(
                cfg, scored_dir(run, k), policy, ckpt_dir(run, k + 1), report=update_json(run, k)
            )
            train = summarize(rollouts_dir(run, k))
            console.print(
                f"iteration {k}: success {train['success_rate']:.3f}, return {train['mean_return']:.3f}, "
                f"parse failures {train['parse_failure_rate']:.3f}, approx_kl {stats['approx_kl']:.2e}, "
                f"clipfrac {stats['clipfrac']:.3f}"
            )
            if cfg.eval_every and (k + 1) % cfg.eval_every == 0 and k + 1 < iterations:
                _eval(cfg, str(ckpt_dir(run, k + 1)), eval_dir(run, k + 1))
        final = latest_ckpt(run) or 0
        _eval(cfg, str(ckpt_dir(run, final)), eval_dir(run, final))
        _print_progress(run)


def _print_progress(run: Path) -> None:
    """Success rate per iteration: training episodes (sampled) and evals (held-out seeds)."""
    from vlmagent.shards import read_manifest
    from vlmagent.stages.eval import SUMMARY, summarize

    table = Table(title=f"{run}: success rate per iteration")
    for c in ("iteration", "train success", "train return", "parse failures", "eval success", "eval return"):
        table.add_column(c, justify="right")
    k = 0
    while True:
        has_train = read_manifest(rollouts_dir(run, k)) is not None
        ev = eval_dir(run, k) / SUMMARY
        if not has_train and not ev.exists():
            break
        tr = summarize(rollouts_dir(run, k)) if has_train else {}
        es = json.loads(ev.read_text()) if ev.exists() else {}
        fmt = lambda d, key: f"{d[key]:.3f}" if key in d else ""  # noqa: E731
        table.add_row(
            str(k), fmt(tr, "success_rate"), fmt(tr, "mean_return"), fmt(tr, "parse_failure_rate"),
            fmt(es, "success_rate"), fmt(es, "mean_return"),
        )  # fmt: skip
        k += 1
    console.print(table)


@app.command()
def config(run: RunOpt = None) -> None:
    """Print the effective config of a run (or the defaults) as JSON."""
    from vlmagent.config import config_dict

    with cli_errors():
        cfg = load_config(run / RUN_TOML if run else None)
        console.print_json(json.dumps(config_dict(cfg)))


@app.command()
def demos(
    env: EnvOpt = None,
    episodes: Annotated[int | None, typer.Option(help="demo episodes")] = None,
    out: Annotated[Path | None, typer.Option(help="output directory (default: the run's demos/)")] = None,
    run: RunOpt = None,
    random_frac: Annotated[
        float | None, typer.Option(help="share of steps whose action is a random legal one (imperfect demos)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="demo seed (default: the run seed + 500000)")] = None,
    cot: CotOpt = None,
) -> None:
    """Oracle episodes as trajectory shards (responses in the prompt's format) for `sft`."""
    from vlmagent.stages import demos as demos_stage
    from vlmagent.stages.eval import summarize

    with cli_errors():
        if run is None and out is None:
            raise UserError("give --out (or --run)")
        cfg = _config(run, env=env, episodes=episodes, cot=cot, demo_random_frac=random_frac)
        if not 0 <= cfg.demo_random_frac <= 1:
            raise UserError(f"--random-frac {cfg.demo_random_frac}: expected a share in [0, 1]")
        out = out or run / "demos"  # type: ignore[operator]
        demos_stage.run(cfg, out, cfg.seed + 500_000 if seed is None else seed)
        _print_summary(f"demos {cfg.env} -> {out}", summarize(out))


@app.command()
def sft(
    data: Annotated[list[Path], typer.Option(help="trajectory stage dir(s) to train on (repeatable)")],
    policy: Annotated[str, typer.Option(help="checkpoint (or HF model dir) to start from")],
    out: Annotated[Path, typer.Option(help="checkpoint to write")],
    run: RunOpt = None,
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the data (overrides --steps)")] = None,
    lr: Annotated[float | None, typer.Option(help="peak AdamW learning rate")] = None,
    batch_size: Annotated[int | None, typer.Option(help="rows per optimizer step")] = None,
    seed: SeedOpt = None,
    facts_only: Annotated[
        bool, typer.Option(help="targets cut to the image facts (e.g. the cards): a reading warm-up")
    ] = False,
) -> None:
    """Supervised fine-tuning on response tokens; resumable (rerun after a kill continues)."""
    from vlmagent.stages import sft as sft_stage

    with cli_errors():
        cfg = _config(run, sft_steps=steps, sft_lr=lr, sft_batch_size=batch_size, seed=seed)
        stats = sft_stage.run(cfg, data, policy, out, epochs=epochs, facts_only=facts_only)
        _print_summary(f"sft -> {out}", {k: v for k, v in stats.items() if isinstance(v, int | float)})
        console.print(f"loss curve: {out / sft_stage.LOSS_PNG}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="run directory")],
    png: Annotated[
        Path | None, typer.Option(help="learning-curve PNG (default: RUN/learning_curve.png)")
    ] = None,
) -> None:
    """Success, return, parse failures, clip fraction and approx KL per iteration; learning-curve PNG."""
    from vlmagent.stages import report as rep

    with cli_errors():
        if not run.is_dir():
            raise UserError(f"{run}: no such run directory")
        rows = rep.gather(run)
        if not rows:
            raise UserError(f"{run}: no iterations yet (no iter/k/rollouts, update.json or eval/k)")
        console.print(rep.table(rows, f"{run}: per iteration"))
        console.print(f"learning curve: {rep.plot(rows, png or run / rep.CURVE_PNG, run.resolve().name)}")


if __name__ == "__main__":
    app()
