"""How often a policy's steps take the oracle's action, from its eval shards: a per-step measure of a card
task's policy (Blackjack's basic strategy, NumberLine's move toward the target), far less noisy than
success, whose Blackjack episodes end in the deal's luck.

Each episode is replayed in its env from its env_seed and the actions it took (a parse failure's random
action is the legal one whose step reproduces the row's info); at each step the oracle's action for the
state the policy saw is compared with the action the policy named, and the image facts its CoT wrote
(the fields before "thoughts") with the oracle's: a misread against a wrong decision. Of the failed
episodes (return <= 0), those with a parse failure: NumberLine's parse penalty fails an episode that
still reaches the target. The run dir above each eval dir gives the env's settings.

    python bench/agreement.py runs/learn/blackjack/eval/000000 runs/learn/blackjack-grpo/eval/000010
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vlmagent.config import load_config
from vlmagent.envs import make_env
from vlmagent.prompts import facts_only, oracle_response, parse
from vlmagent.shards import read_stage
from vlmagent.stages.collect import env_kwargs, episode_summary


def replay(env_name: str, env, seed: int, rows: list[dict]) -> list[tuple[bool | None, bool]]:
    """For each step of one episode: whether the named action is the oracle's (None: no action parsed),
    and whether the response's image facts (its fields before "thoughts") are the oracle's."""
    env.reset(seed=seed)
    legal = list(env.unwrapped.actions)
    verdicts: list[tuple[bool | None, bool]] = []
    for row in rows:
        oracle_text = oracle_response(env_name, env, cot=True)
        oracle, _ = parse(legal, oracle_text)
        read = facts_only(row["response"])
        verdicts.append(
            (
                None if row["action"] is None else row["action"] == oracle,
                read is not None and read == facts_only(oracle_text),
            )
        )
        if row["action"] is not None:
            env.step(legal.index(row["action"]))
            continue
        for i in range(len(legal)):  # the random action collect stepped: the one that gives the row's info
            trial = copy.deepcopy(env)
            info = trial.step(i)[4]
            if json.dumps(info, sort_keys=True, default=str) == row["info"]:
                env = trial
                break
        else:
            raise ValueError(
                f"episode {row['episode_id']} step {row['step']}: no legal action reproduces its info"
            )
    return verdicts


def measure(eval_dir: Path) -> dict:
    run = next(p for p in eval_dir.parents if (p / "run.toml").exists())
    cfg = load_config(run / "run.toml")
    df = read_stage(eval_dir).sort("episode_id", "step")
    env = make_env(cfg.env, **env_kwargs(cfg))
    verdicts: list[tuple[bool | None, bool]] = []
    # episodes with return <= 0 (the paper's failure), and those of them with a parse failure
    failed = failed_unparsed = 0
    for (_,), episode in df.group_by("episode_id", maintain_order=True):
        rows = episode.select("episode_id", "step", "action", "info", "env_seed", "response").to_dicts()
        steps = replay(cfg.env, env, rows[0]["env_seed"], rows)
        verdicts += steps
        if episode["reward"].sum() <= 0:
            failed += 1
            failed_unparsed += any(v is None for v, _ in steps)
    agree = sum(v is True for v, _ in verdicts)
    parsed = sum(v is not None for v, _ in verdicts)
    read = sum(r for _, r in verdicts)
    agree_read = sum(v is True for v, r in verdicts if r)
    n = len(verdicts)
    summary = episode_summary(df.to_dicts())
    return {
        "eval": str(eval_dir),
        "episodes": df["episode_id"].n_unique(),
        "steps": n,
        "success": summary["success_rate"],
        "agree": agree / n,
        "se": math.sqrt(agree / n * (1 - agree / n) / n),
        "parse_fail": 1 - parsed / n,
        "agree_parsed": agree / parsed if parsed else float("nan"),
        "read": read / n,
        "agree_read": agree_read / read if read else float("nan"),
        "failed": failed,
        "failed_unparsed": failed_unparsed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("evals", type=Path, nargs="+", help="eval stage dirs (RUN/eval/K, RUN/eval_T0.2/sft...)")
    args = ap.parse_args()
    table = Table(title="steps that take the oracle's action")
    for col in ("eval", "episodes", "steps", "success", "oracle's action", "parse failures", "of parsed",
                "facts read right", "oracle's action when read right", "failed episodes",
                "of them with a parse failure"):  # fmt: skip
        table.add_column(col, justify="left" if col == "eval" else "right")
    for d in args.evals:
        r = measure(d)
        table.add_row(
            r["eval"], str(r["episodes"]), str(r["steps"]), f"{r['success']:.1%}",
            f"{r['agree']:.1%} +- {r['se']:.1%}", f"{r['parse_fail']:.1%}", f"{r['agree_parsed']:.1%}",
            f"{r['read']:.1%}", f"{r['agree_read']:.1%}", str(r["failed"]), str(r["failed_unparsed"]),
        )  # fmt: skip
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
