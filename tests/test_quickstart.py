"""The quick start: the shipped SFT checkpoint (data/quickstart) and what the README's main command shows."""

import hashlib
import json
import re
import shutil
from pathlib import Path

from conftest import TOY_RUN_TOML
from typer.testing import CliRunner

from vlmagent.cli import app

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "data" / "quickstart"
PROVENANCE = json.loads((QUICKSTART / "provenance.json").read_text())


def invoke(*args) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_shipped_checkpoint_is_the_one_its_provenance_records():
    """The weights are the ones built and checked (bench/quickstart.py build), and the tokenizer is the
    project's: a rebuilt tokenizer would give the same text other ids and the policy would read noise."""
    weights = (QUICKSTART / "numberline-sft" / "model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == PROVENANCE["model_sha256"]
    shipped = json.loads((QUICKSTART / "numberline-sft" / "tokenizer.json").read_text())
    project = json.loads((ROOT / PROVENANCE["tokenizer"]).read_text())
    assert shipped["model"] == project["model"] and shipped["added_tokens"] == project["added_tokens"]


def test_shipped_checkpoint_still_plays_as_recorded(tmp_path):
    """The recorded greedy check eval, replayed on today's code: a change to the NumberLine prompt, its
    parser, the image rendering or the processor that the shipped policy cannot follow fails here."""
    check = PROVENANCE["check"]
    out = tmp_path / "check"
    code, output = invoke(
        "eval", "--env", check["env"], "--policy", QUICKSTART / "numberline-sft", "--episodes", check["episodes"],
        "--temperature", check["temperature"], "--seed", check["seed"], "--out", out,
    )  # fmt: skip
    assert code == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == check["episodes"]
    assert summary["parse_failure_rate"] <= check["parse_failure_rate"] + 0.02
    # greedy on one machine is deterministic; another CPU's float order may flip a rare close call
    assert summary["success_rate"] >= check["success_rate"] - 0.05, summary


def test_loop_from_a_config_file_ends_with_before_and_after(tmp_path, tiny_model_dir):
    """`loop --config FILE` creates the run from FILE (its relative policy path is relative to FILE),
    evaluates the start, and ends with the before -> after line from the two evals and the curve's path;
    the same command again is a no-op, and a FILE that disagrees with the run's run.toml is refused."""
    template = tmp_path / "template"
    template.mkdir()
    shutil.copytree(tiny_model_dir, template / "model")
    (template / "run.toml").write_text(TOY_RUN_TOML + 'policy = "model"\n')
    run = tmp_path / "run"
    code, output = invoke("loop", "--run", run, "--config", template / "run.toml", "--iterations", 1)
    assert code == 0, output
    source = json.loads((run / "ckpt" / "000000" / "vlmagent.json").read_text())["source"]
    assert source == str((template / "model").resolve())
    before, after = (
        json.loads((run / "eval" / k / "summary.json").read_text()) for k in ("000000", "000001")
    )
    line = re.search(r"before -> after RL: success ([\d.]+) -> ([\d.]+) \(([+-][\d.]+) points\)", output)
    assert line, output
    assert float(line[1]) == round(before["success_rate"], 3) and float(line[2]) == round(
        after["success_rate"], 3
    )
    assert float(line[3]) == round(100 * (after["success_rate"] - before["success_rate"]), 1)
    assert f"same {before['episodes']} held-out episodes" in output
    assert (run / "learning_curve.png").stat().st_size > 0 and str(run / "learning_curve.png") in output

    mtime = (run / "ckpt" / "000001" / "vlmagent.json").stat().st_mtime_ns
    code, output = invoke("loop", "--run", run, "--config", template / "run.toml", "--iterations", 1)
    assert code == 0 and "before -> after RL" in output
    assert (run / "ckpt" / "000001" / "vlmagent.json").stat().st_mtime_ns == mtime  # nothing redone

    (template / "run.toml").write_text(
        TOY_RUN_TOML.replace("eval_episodes = 4", "eval_episodes = 6") + 'policy = "model"\n'
    )
    code, output = invoke("loop", "--run", run, "--config", template / "run.toml", "--iterations", 1)
    assert code == 2 and "eval_episodes = 6" in output and "has 4" in output, output
    code, output = invoke("loop", "--run", tmp_path / "other", "--config", tmp_path / "missing.toml")
    assert code == 2 and "missing.toml: no such file" in output and not (tmp_path / "other").exists()
