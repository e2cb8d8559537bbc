"""Gymnasium and Python conventions: `import vlmagent` registers the envs, `python -m vlmagent` and
`torchrun -m vlmagent` run the CLI. Each in a fresh interpreter: this one has long imported everything."""

import json
import os
import subprocess
import sys

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=timeout)


def test_import_vlmagent_registers_the_envs_and_leaves_alfworld_lazy():
    code = (
        "import sys, gymnasium as gym, vlmagent\n"
        "env = gym.make('vlmagent/NumberLine-v0', image_size=64)\n"
        "obs, info = env.reset(seed=0)\n"
        "ids = sorted(k for k in gym.registry if k.startswith('vlmagent/'))\n"
        "print(obs.shape, ids, 'textworld' in sys.modules, 'torch' in sys.modules)\n"
    )
    res = run(sys.executable, "-c", code)
    assert res.returncode == 0, res.stderr[-2000:]
    shape, rest = res.stdout.strip().split(" [", 1)
    assert shape == "(64, 64, 3)"
    assert "'vlmagent/ALFWorld-v0'" in rest and "'vlmagent/Blackjack-v0'" in rest
    assert rest.endswith("] False False")  # neither ALFWorld's engine nor torch came with the import


def test_python_m_vlmagent_runs_the_cli(tmp_path):
    res = run(sys.executable, "-m", "vlmagent", "--help")
    assert res.returncode == 0 and "collect" in res.stdout and "vlmagent" in res.stdout
    out = tmp_path / "eval"
    res = run(sys.executable, "-m", "vlmagent", "eval", "--env", "blackjack", "--policy", "oracle",
              "--episodes", "4", "--out", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "summary.json").read_text())["episodes"] == 4
    res = run(sys.executable, "-m", "vlmagent", "eval", "--env", "chess", "--policy", "oracle",
              "--out", str(tmp_path / "bad"))  # fmt: skip
    assert res.returncode == 2 and "chess" in res.stdout + res.stderr


def test_torchrun_m_vlmagent_reaches_the_cli(tmp_path):
    """torchrun's own parser takes the module's arguments (no `--` needed for ours but --run, which it
    would read as an abbreviation of its --run-path); tests/test_stages.py runs a 2-rank update this way."""
    missing = tmp_path / "no-scored-rows"
    res = run(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port", "29519",
              "-m", "vlmagent", "update", "--scored", str(missing), "--policy", str(tmp_path / "p"),
              "--out", str(tmp_path / "o"))  # fmt: skip
    assert res.returncode != 0
    assert "no-scored-rows" in res.stdout + res.stderr  # our one-line bad-input error, from the rank
