"""How much of each update carries a learning signal: per iteration of a loop run, the share of scored steps
whose advantage is zero (as `skip_zero_advantage` counts it), and the share of episode groups (the episodes of one env seed) whose
returns are all equal.

Under grpo and gigpo an episode group whose episodes all return the same gives every step an episode
advantage of zero (and gigpo's step groups inside it are equal too), so as success nears 100% most of
an update's steps teach nothing: the policy gradient then rests on the few groups with a failure, while
update still spends its forward and backward passes on every step.

    python bench/advantage_signal.py runs/learn/numberline runs/learn/numberline-s1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from vlmagent.rundir import scored_dir
from vlmagent.shards import SCORED_SCHEMA, read_manifest, read_stage
from vlmagent.stages.update import ZERO_ADVANTAGE


def signal_of(scored: pl.DataFrame) -> dict[str, float]:
    """Steps, the share with a zero advantage, groups, the share whose episodes all return the same."""
    # an episode's return is its rewards' sum (success: return > 0, the paper's rule, as eval counts it)
    episodes = scored.group_by("episode_id").agg(
        pl.col("env_seed").first(), pl.col("reward").sum().alias("ret")
    )
    groups = episodes.group_by("env_seed").agg(pl.col("ret").round(6).n_unique().alias("distinct"))
    return {
        "steps": scored.height,
        "zero": float((scored["advantage"].abs() <= ZERO_ADVANTAGE).mean() or 0.0),  # what update skips
        "groups": groups.height,
        "uniform": float((groups["distinct"] == 1).mean() or 0.0),
        "success": float((episodes["ret"] > 0).mean() or 0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="loop run directories (RUN/iter/K/scored)")
    args = ap.parse_args()
    for run in args.runs:
        table = Table(title=f"{run}: learning signal per update")
        for col in ("iteration", "steps", "zero advantage", "groups", "all returns equal", "success"):
            table.add_column(col, justify="right")
        k = 0
        while read_manifest(scored_dir(run, k)) is not None:  # the iterations scored so far
            s = signal_of(read_stage(scored_dir(run, k), SCORED_SCHEMA))
            table.add_row(
                str(k), str(s["steps"]), f"{s['zero']:.1%}", str(s["groups"]), f"{s['uniform']:.1%}",
                f"{s['success']:.1%}",
            )  # fmt: skip
            k += 1
        Console().print(table)


if __name__ == "__main__":
    main()
