"""The quick start's warm start and what the README's main command shows.

    python bench/learn.py numberline --iterations 0     # the NumberLine recipe's SFT (runs/learn/numberline)
    python bench/quickstart.py build                     # its SFT checkpoint, in fp16, into data/quickstart/
    python bench/quickstart.py measure --seeds 0 1 2     # the main command from scratch, once per seed
    python bench/quickstart.py measure --set advantage=\"grpo\" group_size=4   # a variant of its settings

`build` ships the recipe's SFT policy (4M parameters, 8 MB in fp16) so that the README's main command
starts RL from a policy that already reads the image, and records its provenance: the commit and recipe
it was trained on, its held-out success there, the weights' and tokenizer's hashes, and a greedy check
eval of the fp16 weights that tests/test_quickstart.py replays.

`measure` runs the README's main command (`vlmagent loop --run DIR --config data/quickstart/run.toml`)
in a fresh run directory per seed and prints its wall time and the held-out success before and after RL,
into docs/results/quickstart.json with the commit. `--set KEY=VALUE ...` measures the same command with
those settings changed (`--config` a copy of run.toml with them, in the runs directory), into
docs/results/quickstart-VALUE-....json, so variants are compared on the same seeds and held-out eval.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from learn import git, parse_set  # bench/learn.py, beside this script

from vlmagent.config import toml_text

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "data" / "quickstart"
CHECKPOINT = QUICKSTART / "numberline-sft"
PROVENANCE = QUICKSTART / "provenance.json"
RUN_TOML = QUICKSTART / "run.toml"
ITERATIONS = 3  # the README's main command: --iterations 3
# the check tests/test_quickstart.py replays: greedy, the first held-out seeds
CHECK = {"env": "numberline", "episodes": 64, "temperature": 0.0, "seed": 1_000_000}
VLMAGENT = [sys.executable, "-m", "vlmagent.cli"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_eval(policy: Path, out: Path) -> dict:
    """The greedy check eval of a policy (what the test replays), its summary."""
    shutil.rmtree(out, ignore_errors=True)
    args = ["eval", "--env", CHECK["env"], "--policy", policy, "--episodes", CHECK["episodes"]]
    args += ["--temperature", CHECK["temperature"], "--seed", CHECK["seed"], "--out", out]
    subprocess.run([*VLMAGENT, *map(str, args)], cwd=ROOT, check=True)
    return json.loads((out / "summary.json").read_text())


def build(source: Path) -> None:
    """data/quickstart/numberline-sft: the SFT checkpoint of bench run `source`, weights in fp16."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    bench = json.loads((source / "provenance.json").read_text())
    sft_eval = json.loads((source / "eval" / "000000" / "summary.json").read_text())
    sft_run = (source / "run.toml").read_text()
    shutil.rmtree(CHECKPOINT, ignore_errors=True)
    model = AutoModelForImageTextToText.from_pretrained(source / "sft", dtype=torch.float16)
    model.save_pretrained(CHECKPOINT)  # fp16: half the bytes; loading casts back to fp32 on a CPU
    AutoProcessor.from_pretrained(source / "sft").save_pretrained(CHECKPOINT)
    check = check_eval(CHECKPOINT, ROOT / "runs" / "quickstart-check")
    provenance = {
        "what": "the tiny VLM after the NumberLine recipe's SFT (recipes/numberline.toml), weights in fp16",
        "built_by": "python bench/learn.py numberline --iterations 0 && python bench/quickstart.py build",
        "sft_commit": bench["commit"],
        "sft_dirty": bench["dirty"],
        "torch": bench["torch"],
        "transformers": bench["transformers"],
        "sft_settings": {k: v for k, v in tomllib.loads(sft_run).items() if k != "policy"},
        # the fp32 SFT policy on the recipe's held-out seeds, at the recipe's temperature
        "sft_heldout": {k: sft_eval[k] for k in ("episodes", "success_rate", "parse_failure_rate", "seed")}
        | {"temperature": tomllib.loads(sft_run)["temperature"]},  # fmt: skip
        "source_sha256": sha256(source / "sft" / "model.safetensors"),
        "model_sha256": sha256(CHECKPOINT / "model.safetensors"),
        "tokenizer": "data/tiny/tokenizer.json",
        "check": CHECK | {k: check[k] for k in ("success_rate", "parse_failure_rate")},
        "check_commit": git("rev-parse", "HEAD"),
        "check_dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "vlmagent", "stages")),
    }
    PROVENANCE.write_text(json.dumps(provenance, indent=1) + "\n")
    print(json.dumps(provenance, indent=1))


def variant_name(settings: dict) -> str:
    """quickstart, or quickstart-VALUE-... for a variant: its results file and runs directory."""
    return "-".join(["quickstart", *(str(v) for v in settings.values())])


def variant(settings: dict, runs: Path) -> Path:
    """run.toml with `settings` changed (its policy made absolute), written into `runs`; run.toml itself
    when there are none."""
    if not settings:
        return RUN_TOML
    with open(RUN_TOML, "rb") as f:
        values = tomllib.load(f)
    values.update(settings, policy=str(CHECKPOINT))
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / "run.toml"
    path.write_text(toml_text(values))
    return path


def measure(seeds: list[int], runs: Path, settings: dict) -> None:
    """The README's main command from scratch, once per seed: wall time, success before -> after."""
    commit = git("rev-parse", "HEAD")  # at the start: a commit made meanwhile did not run
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "vlmagent", "stages", "data"))
    config = variant(settings, runs)
    rows = []
    for seed in seeds:
        run = runs / f"seed{seed}"
        shutil.rmtree(run, ignore_errors=True)
        args = ["loop", "--run", run, "--config", config, "--iterations", ITERATIONS, "--seed", seed]
        t0 = time.perf_counter()
        subprocess.run([*VLMAGENT, *map(str, args)], cwd=ROOT, check=True)
        wall = time.perf_counter() - t0
        before, after = (
            json.loads((run / "eval" / f"{k:06d}" / "summary.json").read_text()) for k in (0, ITERATIONS)
        )
        rows.append(
            {
                "seed": seed,
                "seconds": round(wall, 1),
                "before": before["success_rate"],
                "after": after["success_rate"],
                "parse_before": before["parse_failure_rate"],
                "parse_after": after["parse_failure_rate"],
                "eval_episodes": after["episodes"],
            }
        )
        print(json.dumps(rows[-1]))
    print("| seed | wall (s) | held-out success before | after | parse failures before | after |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['seed']} | {r['seconds']:.0f} | {r['before']:.3f} | {r['after']:.3f} "
            f"| {r['parse_before']:.3f} | {r['parse_after']:.3f} |"
        )
    import torch

    result = {
        "command": f"vlmagent loop --run DIR --config data/quickstart/run.toml --iterations {ITERATIONS} --seed S",
        "settings": settings,  # changed from run.toml's
        "runs": rows,
        "commit": commit,
        "dirty": dirty,
        "torch_threads": torch.get_num_threads(),
    }
    (ROOT / "docs" / "results" / f"{variant_name(settings)}.json").write_text(
        json.dumps(result, indent=1) + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="ship a bench run's SFT checkpoint as data/quickstart/numberline-sft")
    b.add_argument("--from", dest="source", type=Path, default=ROOT / "runs" / "learn" / "numberline")
    m = sub.add_parser("measure", help="run the README's main command once per seed")
    m.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    m.add_argument(
        "--runs", type=Path, help="where the runs go (default: runs/quickstart[-VALUE...]-measure)"
    )
    m.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="run.toml settings to change")
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.source)
    else:
        settings = parse_set(args.set)
        measure(args.seeds, args.runs or ROOT / "runs" / f"{variant_name(settings)}-measure", settings)


if __name__ == "__main__":
    main()
