"""What an ALFWorld policy does step by step, from its eval shards: whether its answer names a listed
command, whether that command was admissible, and whether the number it answered names the command its
own thoughts chose ("Next: CMD"), the link the expert's demos always make and a tiny model can miss;
plus success per task type. Reads the numbered list from each row's prompt, in either layout the env
has written (`7: go to drawer 1`, and now `go to drawer 1 (7)`), so older runs compare with newer ones.

    python bench/alfworld_steps.py runs/learn/alfworld/eval/000000 runs/learn/alfworld/eval/000002
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from vlmagent.shards import read_stage

LISTED = re.compile(r"^(?:(\d+): (.+)|(.+) \((\d+)\))$")
NEXT = re.compile(r"Next: (.+?)(?: \(\d+\))?\.?$")


def listed_commands(prompt: str) -> list[str]:
    """The admissible commands in the order the prompt numbered them."""
    block = prompt.split("Admissible actions:\n", 1)[1].split("\nYour response should", 1)[0]
    commands = {}
    for line in block.splitlines():
        m = LISTED.match(line)
        if m is None:
            raise ValueError(f"not a listed command: {line!r}")
        number, command = (int(m[1]), m[2]) if m[1] else (int(m[4]), m[3])
        commands[number] = command
    return [commands[k] for k in sorted(commands)]


def step_facts(row: dict) -> dict[str, bool]:
    """One step: answered a listed number, admissible, thoughts chose a listed command, number = that
    command, number past the list's end."""
    listed = listed_commands(row["prompt"])
    try:
        response = json.loads(row["response"])
        thoughts, answer = str(response.get("thoughts", "")), str(response.get("action", "")).strip()
    except (json.JSONDecodeError, AttributeError):
        thoughts, answer = "", ""
    m = NEXT.search(thoughts.strip())
    chosen = m[1] if m else None
    number = int(answer) if answer.isdigit() else None
    named = listed[number - 1] if number and 1 <= number <= len(listed) else None
    return {
        "number": named is not None,
        "admissible": bool(json.loads(row["info"])["admissible"]),
        "thought_listed": chosen in listed,
        "number_is_thought": named is not None and named == chosen,
        "past_end": number is not None and number > len(listed),
    }


def measure(eval_dir: Path) -> dict:
    df = read_stage(eval_dir).sort("episode_id", "step")
    facts = [step_facts(r) for r in df.select("prompt", "response", "info").iter_rows(named=True)]
    wins, episodes = Counter(), Counter()
    for last in df.group_by("episode_id").agg(pl.col("info").sort_by("step").last())["info"]:
        info = json.loads(last)
        episodes[info["task_type"]] += 1
        wins[info["task_type"]] += bool(info["won"])
    n = len(facts)
    return {
        "eval": str(eval_dir),
        "episodes": sum(episodes.values()),
        "wins": sum(wins.values()),
        "steps": n,
        **{k: sum(f[k] for f in facts) / n for k in facts[0]},
        "by_type": {t: f"{wins[t]}/{episodes[t]}" for t in sorted(episodes)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "evals", type=Path, nargs="+", help="ALFWorld eval stage dirs (RUN/eval/K, RUN/eval_random)"
    )
    args = ap.parse_args()
    results = [measure(d) for d in args.evals]
    table = Table(title="ALFWorld eval steps")
    for col in ("eval", "wins", "steps", "a listed number", "admissible", "thoughts chose a listed command",
                "number = thoughts' command", "number past the list"):  # fmt: skip
        table.add_column(col, justify="left" if col == "eval" else "right")
    for r in results:
        table.add_row(
            r["eval"], f"{r['wins']}/{r['episodes']}", str(r["steps"]), f"{r['number']:.1%}",
            f"{r['admissible']:.1%}", f"{r['thought_listed']:.1%}", f"{r['number_is_thought']:.1%}",
            f"{r['past_end']:.1%}",
        )  # fmt: skip
    by_type = Table(title="wins per task type")
    types = sorted({t for r in results for t in r["by_type"]})
    by_type.add_column("eval")
    for t in types:
        by_type.add_column(t.replace("_", " "), justify="right")
    for r in results:
        by_type.add_row(r["eval"], *(r["by_type"].get(t, "-") for t in types))
    console = Console(width=200)
    console.print(table)
    console.print(by_type)


if __name__ == "__main__":
    main()
