"""A stage knows what it was asked (issue 17): a rerun with the same inputs resumes or is a no-op, other
inputs stop with exit 2 and one line naming the field (or --overwrite starts over); every bad input file
is exit 2 with one line naming it; a fault of the machine is exit 1."""

import errno
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import TOY_RUN_TOML
from typer.testing import CliRunner

from vlmagent.cli import app
from vlmagent.shards import SCORED_SCHEMA, read_stage, shard_entry, shard_path, write_manifest

runner = CliRunner()


def cli(*args) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def error_line(output: str) -> str:
    """The one line an error prints; no traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


def digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory, tiny_model_dir):
    """A run dir at toy scale (2 episodes, one a shard), collected, scored and updated by the CLI."""
    root = tmp_path_factory.mktemp("pipe")
    run = root / "run"
    run.mkdir()
    (run / "run.toml").write_text(TOY_RUN_TOML.replace("episodes = 4", "episodes = 2").replace(
        "episodes_per_shard = 2", "episodes_per_shard = 1"))  # fmt: skip
    p = {"root": root, "run": run, "model": tiny_model_dir}
    p["rollouts"], p["scored"], p["ckpt"] = root / "rollouts", root / "scored", root / "ckpt1"
    common = ["--run", run, "--policy", tiny_model_dir]
    assert cli("collect", *common, "--out", p["rollouts"])[0] == 0
    assert cli("score", *common, "--rollouts", p["rollouts"], "--out", p["scored"])[0] == 0
    code, out = cli("update", *common, "--scored", p["scored"], "--out", p["ckpt"])
    assert code == 0, out
    return p


def copy_stage(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_same_inputs_rerun_is_a_no_op_with_identical_bytes(pipe):
    before = {k: digest(pipe[k]) for k in ("rollouts", "scored", "ckpt")}
    common = ["--run", pipe["run"], "--policy", pipe["model"]]
    assert cli("collect", *common, "--out", pipe["rollouts"])[0] == 0
    assert cli("score", *common, "--rollouts", pipe["rollouts"], "--out", pipe["scored"])[0] == 0
    assert cli("update", *common, "--scored", pipe["scored"], "--out", pipe["ckpt"])[0] == 0
    assert {k: digest(pipe[k]) for k in ("rollouts", "scored", "ckpt")} == before


def test_the_same_policy_named_relative_or_absolute_is_the_same_input(pipe, monkeypatch):
    """A checkpoint is recorded by its absolute path and weights: naming it from another working
    directory, or relative instead of absolute, finds the finished stage (a no-op), not a mismatch."""
    before = digest(pipe["rollouts"])
    monkeypatch.chdir(pipe["model"].parent)
    code, out = cli(
        "collect", "--run", pipe["run"], "--policy", pipe["model"].name, "--out", pipe["rollouts"]
    )
    assert code == 0, out
    assert digest(pipe["rollouts"]) == before


def test_a_copy_of_the_same_weights_is_the_same_policy(pipe, tmp_path):
    """loop copies its starting checkpoint to ckpt/000000 and evaluates it into eval/000000, which a bench
    may have filled already from the original path: the same weights under another path find the
    finished stage; other weights do not."""
    common = ["--run", pipe["run"], "--episodes", 2]
    out = tmp_path / "eval"
    assert cli("eval", *common, "--policy", pipe["model"], "--out", out)[0] == 0
    before = digest(out)
    copy = shutil.copytree(pipe["model"], tmp_path / "copy")
    code, output = cli("eval", *common, "--policy", copy, "--out", out)
    assert code == 0, output
    assert digest(out) == before
    code, output = cli("eval", *common, "--policy", pipe["ckpt"], "--out", out)
    assert code == 2 and "policy" in error_line(output)


def test_every_stage_records_its_inputs(pipe):
    rollouts = json.loads((pipe["rollouts"] / "MANIFEST.json").read_text())["inputs"]
    assert rollouts["stage"] == "collect" and rollouts["env"] == "numberline" and rollouts["seed"] == 0
    assert rollouts["policy"] == str(pipe["model"]) and len(rollouts["policy_sha256"]) == 64
    assert rollouts["temperature"] == 1.0 and rollouts["max_new_tokens"] == 16
    assert json.loads((pipe["rollouts"] / "INPUTS.json").read_text()) == rollouts
    scored = json.loads((pipe["scored"] / "MANIFEST.json").read_text())["inputs"]
    manifest_hash = hashlib.sha256((pipe["rollouts"] / "MANIFEST.json").read_bytes()).hexdigest()
    assert scored["stage"] == "score" and scored["rollouts_manifest_sha256"] == manifest_hash
    assert scored["cot_lambda"] == 0.5 and scored["policy_sha256"] == rollouts["policy_sha256"]
    meta = json.loads((pipe["ckpt"] / "vlmagent.json").read_text())
    assert meta["inputs"]["stage"] == "update" and meta["inputs"]["learning_rate"] == 1e-3
    assert set(meta["sha256"]) == {"model.safetensors", "value_head.safetensors"}


def test_mixed_resume_is_refused_and_overwrite_starts_clean(tmp_path):
    """A collect killed after its first shard (its MANIFEST and a shard gone), rerun with another seed."""
    base = ["collect", "--env", "numberline", "--policy", "oracle", "--episodes", "40"]
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    assert cli(*base, "--out", killed)[0] == 0
    (killed / "MANIFEST.json").unlink()
    shard_path(killed, 1).unlink()
    code, out = cli(*base, "--out", killed, "--seed", "1")
    assert code == 2 and "seed = 0, asked for seed = 1" in error_line(out) and str(killed) in out
    assert not (killed / "MANIFEST.json").exists() and not shard_path(killed, 1).exists()
    assert cli(*base, "--out", killed, "--seed", "1", "--overwrite")[0] == 0
    assert cli(*base, "--out", fresh, "--seed", "1")[0] == 0
    assert read_stage(killed).equals(read_stage(fresh))
    assert set(read_stage(killed)["env_seed"].to_list()) == set(read_stage(fresh)["env_seed"].to_list())
    # the same seed resumes: the missing shard is made again, identical
    shard_path(fresh, 1).unlink()
    (fresh / "MANIFEST.json").unlink()
    assert cli(*base, "--out", fresh, "--seed", "1")[0] == 0
    assert read_stage(fresh).equals(read_stage(killed))


def test_score_resumed_with_another_policy_exits_2(pipe, tmp_path):
    half = copy_stage(pipe["scored"], tmp_path / "scored")
    (half / "MANIFEST.json").unlink()
    shard_path(half, 1).unlink()
    other = pipe["ckpt"]  # other weights (a copy of the same weights would be the same policy)
    args = ["score", "--run", pipe["run"], "--rollouts", pipe["rollouts"], "--out", half]
    code, out = cli(*args, "--policy", other)
    assert code == 2 and f'made with policy = "{pipe["model"]}", asked for policy = "{other}"' in error_line(
        out
    )
    assert sorted(p.name for p in half.iterdir()) == ["INPUTS.json", "part-00000.parquet"]
    assert cli(*args, "--policy", pipe["model"])[0] == 0  # the same policy resumes: the same rows
    assert read_stage(half, SCORED_SCHEMA).equals(read_stage(pipe["scored"], SCORED_SCHEMA))


def test_finished_collect_with_other_env_or_seed_exits_2(tmp_path):
    out = tmp_path / "r"
    base = ["collect", "--policy", "oracle", "--episodes", "2", "--out", out]
    assert cli(*base, "--env", "numberline")[0] == 0
    before = digest(out)
    for extra, needle in ((["--env", "blackjack"], 'env = "numberline"'), (["--seed", "5"], "seed = 0")):
        code, out_text = cli(*base, "--env", "numberline", *extra)
        assert code == 2 and needle in error_line(out_text)
    assert digest(out) == before


def test_update_with_other_settings_on_its_checkpoint_exits_2(pipe, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.toml").write_text((pipe["run"] / "run.toml").read_text().replace("1e-3", "2e-3"))
    code, out = cli(
        "update", "--run", run, "--scored", pipe["scored"], "--policy", pipe["model"], "--out", pipe["ckpt"]
    )
    assert code == 2 and "learning_rate = 0.001, asked for learning_rate = 0.002" in error_line(out)
    # --overwrite trains anew; the old checkpoint stays whole until the new one replaces it
    ckpt = copy_stage(pipe["ckpt"], tmp_path / "ckpt1")
    code, out = cli(
        "update",
        "--run",
        run,
        "--scored",
        pipe["scored"],
        "--policy",
        pipe["model"],
        "--out",
        ckpt,
        "--overwrite",
    )
    assert code == 0, out
    assert json.loads((ckpt / "vlmagent.json").read_text())["inputs"]["learning_rate"] == 2e-3
    assert (ckpt / "model.safetensors").read_bytes() != (pipe["ckpt"] / "model.safetensors").read_bytes()


def corrupt_vocab(pipe, dst: Path) -> Path:
    """The rollouts with one token id past the vocabulary, the MANIFEST made to match (so only the ids are wrong)."""
    d = copy_stage(pipe["rollouts"], dst)
    table = pq.read_table(shard_path(d, 0)).to_pydict()
    table["response_token_ids"][0][0] = 10**6
    import pyarrow as pa

    from vlmagent.shards import ROLLOUT_SCHEMA

    pq.write_table(pa.table(table, schema=ROLLOUT_SCHEMA), shard_path(d, 0))
    manifest = json.loads((d / "MANIFEST.json").read_text())
    shards = [shard_entry(d / s["file"]) for s in manifest["shards"]]
    write_manifest(d, shards, **{k: v for k, v in manifest.items() if k not in ("shards", "rows")})
    return d


def plain_model(pipe, dst: Path) -> Path:
    """The tiny model as a plain HF dir (no vlmagent.json, no value head)."""
    d = copy_stage(pipe["model"], dst)
    (d / "vlmagent.json").unlink()
    (d / "value_head.safetensors").unlink()
    return d


def garbage(path: Path, keep_size: bool = True) -> Path:
    size = path.stat().st_size
    path.write_bytes(b"\xff" * (size if keep_size else 8))
    return path


def bad_inputs(pipe, t: Path) -> list[tuple[list, str]]:
    run, model, rollouts, scored, ckpt = (pipe[k] for k in ("run", "model", "rollouts", "scored", "ckpt"))
    (t / "file").write_text("x")
    bad_manifest = copy_stage(rollouts, t / "badmanifest")
    (bad_manifest / "MANIFEST.json").write_text("{not json")
    garbage_ckpt = copy_stage(model, t / "garbage")
    garbage(garbage_ckpt / "model.safetensors")
    bad_header = plain_model(pipe, t / "badheader")
    garbage(bad_header / "model.safetensors", keep_size=False)
    bad_meta = copy_stage(model, t / "badmeta")
    (bad_meta / "vlmagent.json").write_text("[1, 2")
    stripped = plain_model(pipe, t / "run2" / "ckpt" / "000001")  # a run checkpoint that lost its files
    empty = t / "empty"
    write_manifest(empty, [], stage="score")
    (t / "plain_dir").mkdir()
    collect = ["collect", "--policy", "oracle", "--env", "numberline"]
    score = ["score", "--run", run, "--policy", model]
    update = ["update", "--run", run, "--scored", scored]
    return [
        (["collect", "--env", "foo", "--policy", model, "--out", t / "c1"], "unknown env 'foo'"),
        ([*collect, "--out", t / "file"], "file: exists and is not a directory"),
        ([*collect, "--out", t / "c2", "--episodes", "0"], "episodes = 0 should be >= 1"),
        ([*collect, "--out", t / "c2", "--num-envs", "0"], "num_envs = 0 should be >= 1"),
        ([*collect, "--out", t / "c2", "--seed", "-1"], "seed = -1 should be >= 0"),
        ([*collect, "--out", t / "c2", "--temperature", "nan"], "temperature = nan"),
        ([*collect, "--out", t / "c2", "--temperature", "-1"], "temperature = -1.0 should be >= 0"),
        (
            ["eval", "--env", "numberline", "--policy", "oracle", "--out", t / "e", "--seed", "-1"],
            "--seed -1",
        ),
        ([*score, "--rollouts", rollouts, "--out", t / "s1", "--batch-size", "-1"], "--batch-size -1"),
        ([*score, "--rollouts", rollouts, "--out", rollouts], 'stage = "collect", asked for stage = "score"'),
        (
            [*score, "--rollouts", bad_manifest, "--out", t / "s2"],
            "badmanifest/MANIFEST.json: not valid JSON",
        ),
        (
            [*score, "--rollouts", corrupt_vocab(pipe, t / "vocab"), "--out", t / "s3"],
            "outside the vocabulary",
        ),
        ([*update, "--policy", ckpt, "--out", ckpt], "the policy the update starts from"),
        ([*update, "--policy", model, "--out", model], "the policy the update starts from"),
        ([*update, "--policy", ckpt, "--out", model], "not the output of update"),
        ([*update, "--policy", model, "--out", rollouts], 'stage = "collect", asked for stage = "update"'),
        ([*update, "--policy", model, "--out", t / "plain_dir"], "plain_dir: exists and is not a checkpoint"),
        (
            ["update", "--run", run, "--scored", empty, "--policy", model, "--out", t / "u1"],
            "no steps to train on",
        ),
        (
            [*update, "--policy", garbage_ckpt, "--out", t / "u2"],
            "garbage/model.safetensors: checksum mismatch",
        ),
        ([*update, "--policy", bad_header, "--out", t / "u3"], "not a readable safetensors file"),
        ([*update, "--policy", bad_meta, "--out", t / "u4"], "badmeta/vlmagent.json: not valid JSON"),
        ([*update, "--policy", stripped, "--out", t / "u5"], "incomplete checkpoint, missing: vlmagent.json"),
        ([*collect, "--out", t / "c3", "--policy", garbage_ckpt], "checksum mismatch"),
    ]


def test_bad_inputs_exit_2_with_one_line(pipe, tmp_path):
    for args, needle in bad_inputs(pipe, tmp_path):
        code, out = cli(*args)
        assert code == 2, (args, out)
        assert needle in error_line(out), (args, out)
    assert not (Path("runs") / "foo").exists(), "an unknown env made nothing"
    assert not (tmp_path / "u1").exists() and not (tmp_path / "c2").exists()


def test_a_full_disk_is_exit_1_with_one_line_and_leaves_no_temp(tmp_path, monkeypatch):
    import vlmagent.shards

    def full(table, path, **kw):  # a shard half written when the disk fills
        Path(path).write_bytes(b"PAR1")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(vlmagent.shards.pq, "write_table", full)
    out = tmp_path / "r"
    code, text = cli("collect", "--env", "numberline", "--policy", "oracle", "--out", out)
    assert code == 1 and "No space left on device" in error_line(text)
    assert sorted(p.name for p in out.iterdir()) == ["INPUTS.json"]


def test_out_of_memory_is_exit_1_with_one_line(tmp_path, monkeypatch):
    from vlmagent.stages import collect

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(collect, "run_episodes", oom)
    code, text = cli("collect", "--env", "numberline", "--policy", "oracle", "--out", tmp_path / "r")
    assert code == 1 and "MemoryError" in error_line(text)


def test_a_killed_writers_temp_files_are_cleaned_on_the_next_run(pipe, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = copy_stage(pipe["rollouts"], tmp_path / "rollouts")
    (out / "MANIFEST.json").unlink()
    shard_path(out, 1).unlink()
    stale = [out / f".part-00001.parquet.tmp-{dead.pid}", out / f".MANIFEST.json.tmp-{dead.pid}"]
    for p in stale:
        p.write_bytes(b"")
    ckpt_temp = tmp_path / f".ckpt1.tmp-{dead.pid}"
    ckpt_temp.mkdir()
    (ckpt_temp / "model.safetensors").write_bytes(b"half")
    common = ["--run", pipe["run"], "--policy", pipe["model"]]
    assert cli("collect", *common, "--out", out)[0] == 0
    assert read_stage(out).equals(read_stage(pipe["rollouts"]))
    assert not any(p.exists() for p in stale)
    code, text = cli("update", *common, "--scored", pipe["scored"], "--out", tmp_path / "ckpt1")
    assert code == 0, text
    assert not ckpt_temp.exists()


def test_a_worker_with_other_settings_cannot_join(tmp_path):
    base = [
        "collect",
        "--env",
        "numberline",
        "--policy",
        "oracle",
        "--episodes",
        "32",
        "--out",
        tmp_path / "r",
    ]
    assert cli(*base, "--shards", "0/2")[0] == 0
    code, out = cli(*base, "--shards", "1/2", "--seed", "1")
    assert code == 2 and "seed = 0, asked for seed = 1" in error_line(out)
    assert cli(*base, "--shards", "1/2")[0] == 0
    assert (tmp_path / "r" / "MANIFEST.json").exists()


def test_random_corruption_of_a_rollouts_file_is_detected_or_harmless(pipe, tmp_path):
    """Bytes flipped anywhere in the rollouts' files: score says so (exit 2, one line) or scores the same rows."""
    import random

    rng = random.Random(0)
    expected = read_stage(pipe["scored"], SCORED_SCHEMA)
    for trial in range(6):
        d = copy_stage(pipe["rollouts"], tmp_path / f"r{trial}")
        victim = rng.choice(sorted(p for p in d.iterdir() if p.is_file()))
        data = bytearray(victim.read_bytes())
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        victim.write_bytes(bytes(data))
        out = tmp_path / f"s{trial}"
        code, text = cli(
            "score", "--run", pipe["run"], "--policy", pipe["model"], "--rollouts", d, "--out", out
        )
        if code == 2:
            error_line(text)
        else:
            assert code == 0, (victim.name, text)
            assert read_stage(out, SCORED_SCHEMA).equals(expected), victim.name
