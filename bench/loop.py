"""One full RL iteration on the tiny model: the time of each stage and Parquet I/O's share of it.

python bench/loop.py [--env blackjack] [--episodes 64] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import vlmagent.shards as shards
from vlmagent.config import Config
from vlmagent.policy.load import load_policy
from vlmagent.policy.tiny import init_model
from vlmagent.rollout.hf import HFBackend
from vlmagent.stages import collect, score, update
from vlmagent.stages import eval as eval_stage

IO_SECONDS = {"write": 0.0, "read": 0.0}


def timed(kind: str, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            IO_SECONDS[kind] += time.perf_counter() - t

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="blackjack")
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    # count every shard write and read, wherever a stage makes it
    for mod in (shards, collect, score, update, eval_stage):
        for name, kind in (("write_shard", "write"), ("read_shard", "read")):  # read_stage calls read_shard
            if hasattr(mod, name):
                setattr(mod, name, timed(kind, getattr(shards, name)))
    cfg = Config(env=args.env, episodes=args.episodes, max_new_tokens=args.max_new_tokens, temperature=1.0)
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        t = time.perf_counter()
        ckpt0 = init_model(run / "ckpt0")
        times["init-model"] = time.perf_counter() - t

        t = time.perf_counter()
        policy = load_policy(ckpt0)
        collect.run(
            cfg, run / "rollouts", collect.model_actor(cfg, HFBackend(policy), policy.processor), "ckpt0"
        )
        times["collect"] = time.perf_counter() - t

        t = time.perf_counter()
        manifest = score.run(cfg, run / "rollouts", policy, run / "scored")
        times["score"] = time.perf_counter() - t

        t = time.perf_counter()
        stats = update.run(cfg, run / "scored", ckpt0, run / "ckpt1")
        times["update"] = time.perf_counter() - t
    total = sum(times.values())
    io = IO_SECONDS["write"] + IO_SECONDS["read"]
    table = Table(
        title=f"one iteration: {args.episodes} {args.env} episodes, tiny model, {manifest['rows']} steps"
    )
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    for name, sec in times.items():
        table.add_row(name, f"{sec:.1f}", f"{sec / total:.1%}")
    table.add_row(
        "Parquet write (inside stages)", f"{IO_SECONDS['write']:.2f}", f"{IO_SECONDS['write'] / total:.1%}"
    )
    table.add_row(
        "Parquet read (inside stages)", f"{IO_SECONDS['read']:.2f}", f"{IO_SECONDS['read'] / total:.1%}"
    )
    table.add_row("total", f"{total:.1f}", "100%")
    Console().print(table)
    Console().print(
        f"Parquet I/O {io:.2f} s = {io / total:.1%} of the iteration; "
        f"update {stats['tokens_per_s']:.0f} tokens/s; sampler/trainer gap max {manifest['logprob_gap_max']:.1e}"
    )


if __name__ == "__main__":
    main()
