"""`vlmagent report RUN`: per iteration, what the run's files say about learning and PPO's health.

Reads only what the stages wrote: iter/k/rollouts (training episodes of policy k), iter/k/update.json
(the update k -> k+1) and eval/k/summary.json (policy k on held-out seeds). Prints a rich table and
draws the learning curve into the run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from vlmagent.rundir import eval_dir, rollouts_dir, update_json
from vlmagent.shards import read_json, read_manifest

CURVE_PNG = "learning_curve.png"
# (column, source key, format)
COLUMNS = [
    ("iter", "iteration", "{:d}"),
    ("episodes", "train_episodes", "{:d}"),
    ("success", "train_success", "{:.3f}"),
    ("return", "train_return", "{:.3f}"),
    ("parse fail", "train_parse_failure", "{:.3f}"),
    ("resp tok", "train_response_tokens", "{:.1f}"),
    ("approx KL", "approx_kl", "{:.2e}"),
    ("clip frac", "clipfrac", "{:.3f}"),
    ("expl var", "explained_variance", "{:.2f}"),
    ("lr", "learning_rate", "{:.1e}"),
    ("eval eps", "eval_episodes", "{:d}"),
    ("eval success", "eval_success", "{:.3f}"),
    ("eval return", "eval_return", "{:.3f}"),
]


def show(
    run: Path, echo: Callable[[Any], None], png: Path | None = None, with_before_after: bool = False
) -> None:
    """What `vlmagent report` (and `loop` at its end) prints: the per-iteration table, the before/after line
    when asked, and where the learning curve (png, default RUN/learning_curve.png) was drawn."""
    if not run.is_dir():
        raise ValueError(f"{run}: no such run directory")
    rows = gather(run)
    if not rows:
        raise ValueError(f"{run}: no iterations yet (no iter/k/rollouts, update.json or eval/k)")
    echo(table(rows, f"{run}: per iteration"))
    curve = plot(rows, png or run / CURVE_PNG, run.resolve().name)
    if with_before_after:
        echo(before_after(rows))
    echo(f"learning curve: {curve}")


def _indices(root: Path) -> set[int]:
    return (
        {int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()} if root.is_dir() else set()
    )


def gather(run: Path) -> list[dict[str, Any]]:
    """One dict per iteration that has training episodes, an update or an eval."""
    from vlmagent.stages.eval import SUMMARY, summarize

    run = Path(run)
    rows = []
    for k in sorted(_indices(run / "iter") | _indices(run / "eval")):
        row: dict[str, Any] = {"iteration": k}
        if read_manifest(rollouts_dir(run, k)) is not None:
            tr = summarize(rollouts_dir(run, k))
            row |= {
                "train_episodes": tr["episodes"],
                "train_success": tr["success_rate"],
                "train_return": tr["mean_return"],
                "train_parse_failure": tr["parse_failure_rate"],
                "train_response_tokens": tr["mean_response_tokens"],
            }
        if update_json(run, k).exists():
            up = read_json(update_json(run, k))
            row |= {key: up[key] for key in ("approx_kl", "clipfrac", "explained_variance", "learning_rate",
                                             "pg_loss", "v_loss", "seconds") if key in up}  # fmt: skip
        summary = eval_dir(run, k) / SUMMARY
        if summary.exists():
            ev = read_json(summary)
            row |= {
                "eval_episodes": ev["episodes"],
                "eval_success": ev["success_rate"],
                "eval_return": ev["mean_return"],
                "eval_parse_failure": ev["parse_failure_rate"],
            }
        if len(row) > 1:
            rows.append(row)
    return rows


def before_after(rows: list[dict[str, Any]]) -> str:
    """One line: held-out success and parse failures at the first eval and at the last."""
    evals = [r for r in rows if "eval_success" in r]
    if len(evals) < 2:
        return "before/after: needs an eval of the start and of a later checkpoint"
    a, b = evals[0], evals[-1]
    gain = 100 * (b["eval_success"] - a["eval_success"])
    n = a["eval_episodes"], b["eval_episodes"]  # eval k plays seeds eval_seed, eval_seed + 1, ...
    episodes = (
        f"the same {n[0]} held-out episodes" if n[0] == n[1] else f"{n[0]} and {n[1]} held-out episodes"
    )
    return (
        f"before -> after RL: success {a['eval_success']:.3f} -> {b['eval_success']:.3f} ({gain:+.1f} points), "
        f"parse failures {a['eval_parse_failure']:.3f} -> {b['eval_parse_failure']:.3f} "
        f"(checkpoint {a['iteration']} -> {b['iteration']}, {episodes})"
    )


def table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for name, _, _ in COLUMNS:
        t.add_column(name, justify="right")
    for row in rows:
        cells = []
        for _, key, fmt in COLUMNS:
            v = row.get(key)
            cells.append("" if v is None or v != v else fmt.format(v))  # v != v: NaN (no variance)
        t.add_row(*cells)
    return t


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Success (train and eval), return, parse failures, approx KL and clip fraction per iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(r["iteration"], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    ax.plot(*series("train_success"), "o-", ms=3, label="train (sampled)")
    ax.plot(*series("eval_success"), "s-", ms=5, label="eval (held-out seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("success rate")
    ax = axes[1]
    ax.plot(*series("train_return"), "o-", ms=3, label="train return")
    ax.plot(*series("eval_return"), "s-", ms=5, label="eval return")
    ax.plot(*series("train_parse_failure"), "x--", ms=4, label="parse failures (train)")
    ax.set_title("mean return, parse-failure rate")
    ax = axes[2]
    ax.plot(*series("approx_kl"), "o-", ms=3, color="tab:red", label="approx KL")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax2 = ax.twinx()
    ax2.plot(*series("clipfrac"), "^-", ms=3, color="tab:purple", label="clip fraction")
    ax2.set_ylim(0, max([0.05, *series("clipfrac")[1]]) * 1.1)
    ax.set_title("PPO health")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8)
    for a in axes:
        a.set_xlabel("iteration")
        a.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
