"""Does it learn? One task's recipe end to end, with the success rate on held-out seeds after SFT and
after RL, and the wall time of each phase on this machine.

    python bench/learn.py numberline                   # recipes/numberline.toml -> runs/learn/numberline
    python bench/learn.py numberline --name nl-lambda1 --set cot_lambda=1.0 --sft-from runs/learn/numberline
    python bench/learn.py blackjack --name bj-read --set read_steps=1000 --iterations 0   # a recipe knob
    python bench/learn.py --table                      # the results table (markdown) of every run so far
    python bench/learn.py --check numberline           # rerun a published result from scratch and compare;
                                                       # a pass on a clean commit is recorded in its JSON

Phases (each a `vlmagent` command, logged to RUN/commands.sh; a rerun skips what is done, so a killed
bench continues): init-model -> demos -> [sft --facts-only, when the recipe sets read_steps] -> sft ->
eval of the SFT policy -> loop (RL, ending with the eval of the last checkpoint on the same held-out
seeds) -> eval of the oracle on those seeds (the ceiling) -> report. The RL phase's time is the loop's
minus its final eval (from the file times of the last checkpoint and the eval summary). Results go to
RUN/results.json; the learning curve and the SFT loss curve are copied to docs/results/. Each result
records the commit it ran on (a resumed bench refuses other code), and the table sets apart rows whose
code or recipe have changed since they were measured or last reproduced by `--check`.

    --temperature 0.2    also evaluate the SFT and RL policies on the same held-out seeds at T=0.2
    --eval-workers 2     split the bench's evals over 2 processes (when cores are free; same result)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import polars as pl

from vlmagent.config import FIELDS, toml_text
from vlmagent.stages.collect import episode_summary
from vlmagent.stages.eval import summary_rows
from vlmagent.stages.report import gather

ROOT = Path(__file__).resolve().parent.parent
VLMAGENT = [sys.executable, "-m", "vlmagent"]
RESULTS = ROOT / "docs" / "results"
# the paper's 7B results; its ALFWorld games (ALFRED scenes) are not ours, so no comparison there
PAPER = {"numberline": 89.4, "ezpoints": 50.0, "blackjack": 40.2, "points24": 2.3}
# what a result depends on besides its recipe's settings: a row measured where these differ from today's
# is stale (data/tiny: init-model's tokenizer)
CODE = ("vlmagent", "stages", "data/tiny")
# ...less the modules only the other family of tasks runs: an ALFWorld change leaves the card rows current
ALFWORLD_ONLY = ("vlmagent/envs/alfworld.py", "vlmagent/envs/alfworld_games.py")
CARDS_ONLY = tuple(
    f"vlmagent/envs/{m}.py" for m in ("numberline", "ezpoints", "points24", "blackjack", "cards", "formula")
)
# a recipe's [recipe] table: what the bench does around the stages (run.toml holds the rest)
KNOBS = ("model_size", "model_image_size", "model_patch_size", "demo_episodes", "read_steps", "iterations",
         "train_games_per_type", "heldout_games_per_type")  # fmt: skip
# what an SFT checkpoint does not depend on: the settings only score and update read, the RL iterations,
# and the paths the bench writes into run.toml (an --sft-from run plays its SFT run's ALFWorld games)
RL_ONLY = {"iterations", "policy", "alfworld_games"} | {
    n for n, f in FIELDS.items() if f.metadata["rows"] and set(f.metadata["rows"]) <= {"score", "update"}
}
THREADS = os.environ.get("OMP_NUM_THREADS", "1")  # every command of a run gets this many


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def provenance() -> dict:
    """The commit, whether the tree differed from it, and the versions and threads a result was measured with."""
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", *CODE, "recipes", "bench")),
        "torch": importlib.metadata.version("torch"),
        "transformers": importlib.metadata.version("transformers"),
        "threads": int(THREADS),
    }


def recipe_at(commit: str | None, task: str) -> dict | None:
    """A recipe's settings at `commit` (None: the working tree's); its comments do not count."""
    path = f"recipes/{task}.toml"
    try:
        text = git("show", f"{commit}:{path}") if commit else (ROOT / path).read_text()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return tomllib.loads(text)


def with_overrides(recipe: dict, overrides: dict) -> dict:
    """A recipe's settings as a run with these `--set` overrides ran them (a run.toml key goes to [run],
    a knob to [recipe], as run_task applies them)."""
    return {
        "recipe": {**recipe.get("recipe", {}), **{k: v for k, v in overrides.items() if k not in FIELDS}},
        "run": {**recipe.get("run", {}), **{k: v for k, v in overrides.items() if k in FIELDS}},
    }


def code_changed(commit: str | None, task: str, now: str | None = None) -> bool:
    """Whether the code the task runs differs between `commit` and `now` (a commit; None: the working
    tree). An unrecorded commit counts as changed."""
    if not commit:
        return True
    others = CARDS_ONLY if task == "alfworld" else ALFWORLD_ONLY
    code = subprocess.run(
        [
            "git",
            "diff",
            "--quiet",
            commit,
            *([now] if now else []),
            "--",
            *CODE,
            *(f":(exclude){p}" for p in others),
        ],
        cwd=ROOT,
        capture_output=True,
    )
    return code.returncode != 0


def changed_since(
    commit: str | None, task: str, now: str | None = None, overrides: dict | None = None
) -> bool:
    """Whether the code the task runs or the settings a run with `overrides` ran differ between `commit`
    and `now` (a commit; None: the working tree): a variant whose override became the recipe's value is
    unchanged. An unrecorded commit counts as changed."""
    was, is_now = (
        None if recipe is None else with_overrides(recipe, overrides or {})
        for recipe in (recipe_at(commit, task), recipe_at(now, task))
    )
    return code_changed(commit, task, now) or was != is_now


def sft_settings(settings: dict) -> dict:
    """A run's settings ({"recipe": knobs, "run": run.toml}) that its demos and SFT checkpoint depend on."""
    return {part: {k: v for k, v in kv.items() if k not in RL_ONLY} for part, kv in settings.items()}


def sft_differs(sft_from: Path, task: str, commit: str, settings: dict) -> str | None:
    """Why the SFT checkpoint of the bench run `sft_from` may not be the one a run on `commit` with these
    settings would train (None: it is): other code, or another setting demos or SFT read. RL-only settings
    (the learning rate, the estimator...) may differ, so RL variants share one SFT checkpoint."""
    prov_file = sft_from / "provenance.json"
    prov = json.loads(prov_file.read_text()) if prov_file.exists() else {}
    if not prov.get("commit"):
        return f"{prov_file} records no commit"
    if code_changed(prov["commit"], task, commit):
        return f"it was measured on {prov['commit'][:10]}, whose code differs from {commit[:10]}'s"
    result_file = sft_from / "results.json"
    if "overrides" not in prov and not result_file.exists():
        return "its provenance.json does not record its --set overrides"
    overrides = prov["overrides"] if "overrides" in prov else json.loads(result_file.read_text())["overrides"]
    recipe = recipe_at(prov["commit"], task)
    if recipe is None:
        return f"recipes/{task}.toml did not exist at {prov['commit'][:10]}"
    ran = {
        "recipe": with_overrides(recipe, overrides)["recipe"],
        "run": tomllib.loads((sft_from / "run.toml").read_text()),
    }
    was, now = sft_settings(ran), sft_settings(settings)
    diff = sorted(
        k for part in now for k in set(was[part]) | set(now[part]) if was[part].get(k) != now[part].get(k)
    )
    return f"these settings differ from this run's: {', '.join(diff)}" if diff else None


def parse_set(items: list[str]) -> dict:
    """KEY=VALUE pairs; VALUE is a TOML value (4e-5, true, "x"), or else a bare string (advantage=grpo)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value
    return out


def sh(run: Path, *args, workers: int = 1) -> float:
    """Run one vlmagent command (appended to RUN/commands.sh); its wall time in seconds. With workers > 1
    (an eval) it first runs as that many processes at once, worker i playing --shards i/workers, then
    once whole: that replays nothing and writes the summary, which no worker writes when they finish together."""
    # paths relative to the repo root (the commands run there): commands.sh reruns from any clone
    cmd = [os.path.relpath(a, ROOT) if isinstance(a, Path) else str(a) for a in args]
    parts = [[*cmd, "--shards", f"{i}/{workers}"] for i in range(workers)] if workers > 1 else []
    lines = ["vlmagent " + " ".join(shlex.quote(a) for a in c) for c in [*parts, cmd]]
    with open(run / "commands.sh", "a") as f:
        f.write("".join(line + "\n" for line in lines))
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": THREADS, "HF_HUB_OFFLINE": "1"}
    print("".join(f"$ {line} &\n" for line in lines[:-1]), end="", flush=True)
    procs = [subprocess.Popen(VLMAGENT + c, cwd=ROOT, env=env) for c in parts]
    if any([p.wait() for p in procs]):  # a list: every worker is waited for before the bench exits
        sys.exit(f"an eval worker failed: {lines[-1]}")
    print(f"$ {lines[-1]}", flush=True)
    subprocess.run(VLMAGENT + cmd, check=True, cwd=ROOT, env=env)
    return time.perf_counter() - t


def seeds(stage_dir: Path) -> set[int]:
    return set(pl.read_parquet(stage_dir / "*.parquet", columns=["env_seed"])["env_seed"].to_list())


def problems(game_dir: Path) -> set[str]:
    """The PDDL problems of a folder of ALFWorld games (two games are the same game if these match)."""
    return {
        re.sub(r"\(problem [^)]*\)", "", json.loads(p.read_text())["pddl_problem"])  # the name has the seed
        for p in game_dir.glob("*/*/game.tw-pddl")
    }


def success_by_task_type(stage_dir: Path) -> dict[str, dict[str, float]]:
    """Episodes and success rate per ALFWorld task type (eval's own summary, over each type's rows)."""
    by_type: dict[str, list[dict]] = {}
    for row in summary_rows(stage_dir):
        by_type.setdefault(json.loads(row["info"])["task_type"], []).append(row)
    summaries = {t: episode_summary(rows) for t, rows in sorted(by_type.items())}
    return {t: {k: s[k] for k in ("episodes", "success_rate")} for t, s in summaries.items()}


def run_task(
    task: str,
    name: str,
    overrides: dict,
    sft_from: Path | None,
    runs: Path,
    iterations: int | None = None,
    publish: bool = True,
    eval_workers: int = 1,
    temperatures: tuple[float, ...] = (),
) -> dict:
    recipe = tomllib.loads((ROOT / "recipes" / f"{task}.toml").read_text())
    unknown = sorted(k for k in overrides if k not in FIELDS and k not in KNOBS)
    if unknown:
        sys.exit(f"--set {', '.join(unknown)}: neither a run.toml key nor a recipe knob ({', '.join(KNOBS)})")
    effective = with_overrides(recipe, overrides)
    knobs, settings = effective["recipe"], effective["run"]
    run = runs / name
    run.mkdir(parents=True, exist_ok=True)
    times_file = run / "times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    # one run, one commit: a bench resumed after the code changed would mix two versions in one result
    prov_file, prov = run / "provenance.json", provenance()
    if prov_file.exists():
        started = json.loads(prov_file.read_text())
        if changed_since(started["commit"], task, overrides=overrides):
            sys.exit(
                f"{run} was started on {started['commit'][:10]}; the code or recipe differ now: use a new --name"
            )
        if started.get("overrides", overrides) != overrides:
            sys.exit(
                f"{run} was started with --set {started['overrides']}, not {overrides}: use a new --name"
            )
        prov = started
    else:
        prov = {**prov, "overrides": overrides}  # an --sft-from run compares its settings with these
        prov_file.write_text(json.dumps(prov, indent=1))

    def phase(key: str, fn) -> None:
        if key not in times:
            times[key] = fn()
            times_file.write_text(json.dumps(times, indent=1))

    sft = (sft_from / "sft") if sft_from else run / "sft"
    # the SFT checkpoint is part of the result: it must be the one this run would train
    if sft_from is not None:
        why = sft_differs(sft_from, task, prov["commit"], {"recipe": knobs, "run": settings})
        if why:
            sys.exit(f"--sft-from {sft_from}: {why}")
    settings["policy"] = str(sft.resolve())
    if "train_games_per_type" in knobs:  # ALFWorld: our own games, train and held-out drawn apart
        games = (sft_from or run) / "games"
        settings["alfworld_games"] = str(games.resolve())
        for split, seed in (("train", 0), ("heldout", 1)):
            per_type = knobs[f"{split}_games_per_type"]
            args = ("alfworld-games", games / split, "--per-type", per_type, "--seed", seed)
            phase(f"games_{split}", lambda args=args: sh(run, *args))
        assert not problems(games / "train") & problems(games / "heldout"), "a held-out game is a train game"
    toml = run / "run.toml"
    if not toml.exists():
        toml.write_text(toml_text(settings))
    if sft_from is None:
        base = run / "base"
        init = ["init-model", base, "--size", knobs["model_size"], "--image-size", knobs["model_image_size"]]
        init += ["--patch-size", knobs.get("model_patch_size", 14)]
        phase("init", lambda: 0.0 if base.exists() else sh(run, *init))
        phase("demos", lambda: sh(run, "demos", "--run", run, "--episodes", knobs["demo_episodes"]))

        def sft_phase(start: Path, out: Path, *extra) -> float:
            wall = sh(
                run, "sft", "--run", run, "--data", run / "demos", "--policy", start, "--out", out, *extra
            )
            # a bench killed during SFT reruns a no-op here: the checkpoint records the SFT's own time
            return max(wall, json.loads((out / "sft.json").read_text())["seconds"])

        start = base
        if knobs.get("read_steps", 0):  # a reading warm-up: SFT on the responses' image facts only
            start, read_steps = run / "sft_read", knobs["read_steps"]
            phase("sft_read", lambda: sft_phase(base, start, "--facts-only", "--steps", read_steps))
        phase("sft", lambda: sft_phase(start, sft))
    eval0 = run / "eval" / "000000"
    phase(
        "eval_sft",
        lambda: sh(run, "eval", "--run", run, "--policy", sft, "--out", eval0, workers=eval_workers),
    )
    iterations = int(knobs["iterations"]) if iterations is None else iterations
    final = run / "eval" / f"{iterations:06d}"  # with no RL iteration: the SFT eval

    def rl() -> float:
        wall = sh(run, "loop", "--run", run, "--iterations", iterations)
        eval_time = (final / "summary.json").stat().st_mtime - (
            run / "ckpt" / f"{iterations:06d}" / "vlmagent.json"
        ).stat().st_mtime
        times["eval_rl"] = eval_time
        return wall - eval_time

    if iterations:
        phase("rl", rl)
    oracle, random = run / "eval_oracle", run / "eval_random"
    for key, policy, out in (("eval_oracle", "oracle", oracle), ("eval_random", "random", random)):
        phase(
            key,
            lambda p=policy, o=out: sh(
                run, "eval", "--run", run, "--policy", p, "--out", o, workers=eval_workers
            ),
        )
    # the same held-out seeds sampled at other temperatures (the paper samples at 0.2; greedy is 0)
    policies = {"sft": sft, **({"rl": run / "ckpt" / f"{iterations:06d}"} if iterations else {})}
    at_temperature = {f"{t:g}": {k: run / f"eval_T{t:g}" / k for k in policies} for t in temperatures}
    for t, dirs in at_temperature.items():
        for k, out in dirs.items():
            args = ("--policy", policies[k], "--temperature", t, "--out", out)
            phase(
                f"eval_{k}_T{t}",
                lambda a=args: sh(run, "eval", "--run", run, *a, workers=eval_workers),
            )
    if iterations:
        sh(run, "report", run)
    # held out: no eval seed was a demo or training seed
    train_seeds = set().union(*(seeds(d) for d in (run / "iter").glob("*/rollouts")))
    if (sft.parent / "demos").is_dir():
        train_seeds |= seeds(sft.parent / "demos")
    assert not (seeds(final) & train_seeds), "an eval seed was used in demos or training"
    stages = {"sft": eval0, "rl": final, "oracle": oracle, "random": random}
    summary = {k: json.loads((d / "summary.json").read_text()) for k, d in stages.items()}
    by_temperature = {
        t: {k: json.loads((d / "summary.json").read_text()) for k, d in dirs.items()}
        for t, dirs in at_temperature.items()
    }
    result = {
        "task": task,
        "name": name,
        "overrides": overrides,
        "sft_from": str(sft_from) if sft_from else None,
        "iterations": iterations,
        "episodes_per_iteration": settings.get("episodes"),
        "demo_episodes": knobs.get("demo_episodes"),
        "model": f"{knobs['model_size']} {knobs['model_image_size']}px/{knobs.get('model_patch_size', 14)}",
        "temperature": settings["temperature"],  # of every collect and eval of the run
        "success": {k: v["success_rate"] for k, v in summary.items()},
        "mean_return": {k: v["mean_return"] for k, v in summary.items()},
        "parse_failure": {k: v["parse_failure_rate"] for k, v in summary.items()},
        "eval_episodes": summary["rl"]["episodes"],
        # the SFT and RL policies on the same seeds at other sampling temperatures
        **(
            {
                "at_temperature": {
                    t: {k: {m: v[f"{m}_rate"] for m in ("success", "parse_failure")} for k, v in s.items()}
                    for t, s in by_temperature.items()
                }
            }
            if by_temperature
            else {}
        ),
        # per iteration: training success and parse failures (the estimators' plot reads these)
        "train_curve": [
            {k: r[k] for k in ("iteration", "train_success", "train_parse_failure")}
            for r in gather(run)
            if "train_success" in r
        ],
        **(
            {"success_by_task_type": {k: success_by_task_type(d) for k, d in stages.items()}}
            if task == "alfworld"
            else {}
        ),
        "seconds": times,
        **prov,
    }
    (run / "results.json").write_text(json.dumps(result, indent=1))
    if publish:
        publish_result(run, result, sft_from is None)
    return result


def publish_result(run: Path, result: dict, own_sft: bool) -> None:
    """The result, its commands, run.toml and curves into docs/results (what the table reads)."""
    name, sft, iterations = result["name"], run / "sft", result["iterations"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    if iterations:
        shutil.copy(run / "learning_curve.png", RESULTS / f"{name}_learning_curve.png")
    if own_sft and (sft / "loss.png").exists():
        shutil.copy(sft / "loss.png", RESULTS / f"{name}_sft_loss.png")
    for file in ("commands.sh", "run.toml"):  # the commands read run.toml; a rerun logs report again
        lines = (run / file).read_text().replace(f"{ROOT}/", "").splitlines()
        (RESULTS / f"{name}_{file}").write_text("\n".join(dict.fromkeys(lines)) + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))


def check(names: list[str], runs: Path, workers: int = 1) -> int:
    """Rerun published results from scratch into `runs` (nothing published) and compare their held-out
    success after SFT and after RL with docs/results/NAME.json; 1 when one falls short by more than
    eval noise (3 standard deviations of the difference of two evals of that many episodes)."""
    published = {n: json.loads((RESULTS / f"{n}.json").read_text()) for n in names}
    rows, short = [], 0
    for name, pub in sorted(published.items(), key=lambda kv: kv[1]["sft_from"] is not None):
        sft_from = runs / Path(pub["sft_from"]).name if pub["sft_from"] else None
        temperatures = tuple(float(t) for t in pub.get("at_temperature", {}))
        now = run_task(
            pub["task"],
            name,
            pub["overrides"],
            sft_from,
            runs,
            pub["iterations"],
            False,
            workers,
            temperatures,
        )
        ok = True
        for phase in ("sft", "rl") if pub["iterations"] else ("sft",):
            p, q, n = pub["success"][phase], now["success"][phase], now["eval_episodes"]
            floor = p - max(3 * math.sqrt(2 * p * (1 - p) / n), 0.005)
            ok &= q >= floor
            rows.append(
                f"| {name} | {phase} | {100 * p:.1f}% | {100 * q:.1f}% | {100 * floor:.1f}% | {'ok' if q >= floor else 'SHORT'} |"
            )
        short += not ok
        # the published number, reproduced on this commit: the table counts it as today's again
        checked = {k: now[k] for k in ("commit", "dirty", "torch", "transformers", "threads", "success")}
        pub.setdefault("checks", []).append(checked | {"ok": ok})
        (RESULTS / f"{name}.json").write_text(json.dumps(pub, indent=1))
    print("| run | after | published | now | floor | |\n| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 1 if short else 0


def estimator(r: dict) -> str:
    """The advantage estimator of a result's RL phase, from its run.toml (gae: the default)."""
    toml = RESULTS / f"{r['name']}_run.toml"
    settings = tomllib.loads(toml.read_text()) if toml.exists() else {}
    advantage = settings.get("advantage", "gae")
    return advantage if advantage == "gae" else f"{advantage} G={settings.get('group_size', 1)}"


def row(r: dict) -> str:
    s, t = r["success"], r["seconds"]
    sft_time = sum(t.get(k, 0.0) for k in ("init", "demos", "sft_read", "sft"))
    sft_phase = f"{Path(r['sft_from']).name}'s" if r["sft_from"] else f"{sft_time / 60:.1f} min"
    rl_success = f"{100 * s['rl']:.1f}%" if r["iterations"] else "not run"
    random = f"{100 * s['random']:.1f}%" if "random" in s else "-"
    paper = f"{PAPER[r['task']]}%" if r["task"] in PAPER else "n/a"
    evals = sum(t.get(k, 0.0) for k in ("eval_sft", "eval_rl"))
    commit = (r.get("commit") or "unrecorded")[:10] + (" (uncommitted changes)" if r.get("dirty") else "")
    if checks := [c for c in reproduced_on(r) if c != r.get("commit")]:
        commit += f", reproduced on {checks[-1][:10]}"
    return (
        f"| {r['name']} | {estimator(r) if r['iterations'] else '-'} | {r['model']} | {r['temperature']} | {r['demo_episodes']} | {random} | {100 * s['sft']:.1f}% "
        f"| {rl_success} | {100 * s['oracle']:.1f}% | {paper} | {sft_phase} "
        f"| {t.get('rl', 0.0) / 60:.1f} min ({r['iterations']}) | {evals / 60:.1f} min | {commit} |"
    )


def reproduced_on(result: dict) -> list[str]:
    """The commits a result was measured on or reproduced on by `--check`, with a clean tree."""
    runs = [result, *(c for c in result.get("checks", []) if c["ok"])]
    return [r["commit"] for r in runs if r.get("commit") and not r.get("dirty", False)]


def is_stale(result: dict) -> bool:
    """A result no clean measurement or passing check has reproduced on today's code and recipe."""
    overrides = result.get("overrides") or {}
    return all(changed_since(commit, result["task"], "HEAD", overrides) for commit in reproduced_on(result))


def published() -> dict[str, dict]:
    """This bench's results by name (docs/results also holds bench/quickstart.py's, which have no task)."""
    results = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    return {name: r for name, r in results.items() if "task" in r}


def table() -> str:
    """The results measured on today's code, then, apart, those that are not (with their commit)."""
    header = [
        "| run | estimator | model | T | demos | random | SFT success | RL success | oracle | paper 7B | SFT phase | RL phase (iters) | evals | commit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    results = list(published().values())
    current, stale = [], []
    for r in results:  # each verdict costs git calls: one per result
        (stale if is_stale(r) else current).append(r)
    lines = header + [row(r) for r in current]
    if stale:
        lines += [
            "",
            "Not measured or reproduced on today's code or recipe (rerun with `bench/learn.py` or"
            " `--check` before citing):",
            "",
        ]
        lines += header + [row(r) for r in stale]
    if sampled := [r for r in results if "at_temperature" in r]:
        lines += ["", "The same held-out seeds sampled at other temperatures (the paper's is 0.2):", ""]
        lines += ["| run | T | SFT success | RL success |", "| --- | --- | --- | --- |"]
        for r in sampled:
            for t, s in r["at_temperature"].items():
                rl = f"{100 * s['rl']['success']:.1f}%" if "rl" in s else "not run"
                lines.append(f"| {r['name']} | {t} | {100 * s['sft']['success']:.1f}% | {rl} |")
    for r in results:  # ALFWorld: per task type (episodes drawn from the held-out games)
        if "success_by_task_type" in r:
            by = r["success_by_task_type"]
            lines += ["", f"{r['name']}: success by task type on held-out games (episodes)", ""]
            lines += ["| task type | random | SFT | RL | oracle |", "| --- | --- | --- | --- | --- |"]
            stages = ("random", "sft", "rl", "oracle") if r["iterations"] else ("random", "sft", "oracle")
            for t in sorted(by["oracle"]):
                cells = {
                    k: f"{100 * c['success_rate']:.0f}% ({c['episodes']})" if (c := by[k].get(t)) else "-"
                    for k in stages
                }
                cells.setdefault("rl", "not run")
                lines.append(
                    f"| {t} | {cells['random']} | {cells['sft']} | {cells['rl']} | {cells['oracle']} |"
                )
    return "\n".join(lines)


def plot_estimators(task: str) -> Path:
    """Training success per iteration of every published RL run of `task`, one line each, with its
    held-out success after SFT and after RL: docs/results/TASK_estimators.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in published().values() if r["task"] == task and r.get("train_curve")]
    if not runs:
        sys.exit(f"no published RL run of {task} has a train_curve (rerun its bench to add one)")
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        its = [c["iteration"] for c in r["train_curve"]]
        line = ax.plot(its, [c["train_success"] for c in r["train_curve"]], "o-", ms=3, alpha=0.8)[0]
        ax.plot(
            [0, r["iterations"]],
            [r["success"]["sft"], r["success"]["rl"]],
            "s--",
            color=line.get_color(),
            ms=6,
        )
        line.set_label(f"{r['name']} ({estimator(r)}): {100 * r['success']['rl']:.1f}% held out")
    ax.axhline(runs[0]["success"]["oracle"], color="gray", lw=0.8, ls=":", label="oracle")
    ax.set_xlabel("iteration")
    ax.set_ylabel("success (o: training episodes; s: 1,000 held-out)")
    ax.set_title(f"{task}: advantage estimators from the same SFT checkpoint")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = RESULTS / f"{task}_estimators.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "task", nargs="?", help="numberline, blackjack, ezpoints or points24 (recipes/<task>.toml)"
    )
    ap.add_argument("--name", help="run name (default: the task)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="override a run.toml key, or a recipe knob (read_steps, demo_episodes, model_image_size...): key=value",
    )
    ap.add_argument(
        "--sft-from",
        type=Path,
        help="reuse the SFT checkpoint of this earlier bench run (refused when its code, or a setting that demos or SFT read, differs from this run's)",
    )
    ap.add_argument("--iterations", type=int, help="RL iterations (default: the recipe's; 0: SFT only)")
    ap.add_argument(
        "--runs", type=Path, help="where bench runs live (default runs/learn; with --check runs/learn-check)"
    )
    ap.add_argument(
        "--eval-workers",
        type=int,
        default=1,
        help="split each of the bench's evals over this many processes (one thread each; --shards i/n)",
    )
    ap.add_argument(
        "--temperature",
        type=float,
        action="append",
        default=[],
        help="also evaluate the SFT and RL policies on the same seeds at this temperature (repeatable)",
    )
    ap.add_argument("--table", action="store_true", help="print the results table of docs/results/*.json")
    ap.add_argument(
        "--check",
        nargs="*",
        metavar="NAME",
        help="rerun these published results (default: all) into --runs and compare; exit 1 when one falls short",
    )
    ap.add_argument(
        "--plot",
        metavar="TASK",
        help="draw docs/results/TASK_estimators.png from the published RL runs of TASK",
    )
    args = ap.parse_args()
    if args.plot:
        print(plot_estimators(args.plot))
        return
    if args.check is not None:
        names = args.check or sorted(published())
        sys.exit(check(names, args.runs or ROOT / "runs" / "learn-check", args.eval_workers))
    if args.table or not args.task:
        print(table())
        return
    result = run_task(
        args.task,
        args.name or args.task,
        parse_set(args.set),
        args.sft_from,
        args.runs or ROOT / "runs" / "learn",
        args.iterations,
        eval_workers=args.eval_workers,
        temperatures=tuple(args.temperature),
    )
    print(json.dumps({k: result[k] for k in ("name", "success", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
