"""The four stages end to end on the tiny model: collect -> score -> update, eval, restarts."""

import copy
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from vlmagent.cli import app
from vlmagent.config import Config, load_config
from vlmagent.policy.load import load_policy
from vlmagent.rollout.hf import HFBackend
from vlmagent.shards import (
    ROLLOUT_SCHEMA,
    SCORED_SCHEMA,
    ShardError,
    read_stage,
    shard_path,
    write_manifest,
    write_shard,
)
from vlmagent.stages import collect, score, update
from vlmagent.stages import eval as eval_stage

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
ROOT = Path(__file__).resolve().parent.parent


def small_cfg(**over) -> Config:
    base = dict(
        env="blackjack",
        run_name="t",
        episodes=6,
        episodes_per_shard=3,
        num_envs=3,
        max_new_tokens=12,
        temperature=1.0,
        image_size=64,
        update_epochs=2,
        minibatch_size=4,
        grad_accum=2,
        learning_rate=1e-3,
        max_grad_norm=1.0,
    )
    return Config(**{**base, **over})


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_policy(tiny_model_dir)


@pytest.fixture(scope="module")
def collected(tmp_path_factory, policy):
    cfg = small_cfg()
    out = tmp_path_factory.mktemp("iter") / "rollouts"
    actor = collect.model_actor(cfg, HFBackend(policy), policy.processor)
    collect.run(cfg, out, actor, "ckpt0")
    return cfg, out


@pytest.fixture(scope="module")
def scored(collected, policy):
    cfg, rollouts = collected
    out = rollouts.parent / "scored"
    manifest = score.run(cfg, rollouts, policy, out, batch_size=3)
    return cfg, out, manifest


def test_collect_rows_are_exactly_what_the_model_read_and_wrote(collected, policy):
    cfg, out = collected
    df = read_stage(out, ROLLOUT_SCHEMA)
    assert df["episode_id"].n_unique() == cfg.episodes
    assert sorted(df["shard"].unique().to_list()) == [0, 1]
    tok = policy.tokenizer
    for row in df.iter_rows(named=True):
        assert len(row["response_token_ids"]) == len(row["behavior_logprobs"]) <= cfg.max_new_tokens
        assert tok.decode(row["response_token_ids"], skip_special_tokens=True) == row["response"]
        assert 0 <= row["action_token_start"] <= len(row["response_token_ids"])
        assert row["image"][:8] == b"\x89PNG\r\n\x1a\n"
        assert all(lp <= 0 for lp in row["behavior_logprobs"])
    # every episode ends exactly once, on its last step
    last = df.sort("episode_id", "step").group_by("episode_id", maintain_order=True).last()
    assert (last["terminated"] | last["truncated"]).all()
    assert (df["terminated"] | df["truncated"]).sum() == cfg.episodes


def test_generate_leaves_the_shared_tokenizer_as_it_was(collected, policy):
    """The hf backend asks for left padding per call: the policy's tokenizer keeps its own side (right)."""
    assert policy.tokenizer.padding_side == "right"


def test_collect_rerun_is_a_no_op_and_same_seed_same_shards(collected, policy, tmp_path):
    cfg, out = collected
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    actor = collect.model_actor(cfg, HFBackend(policy), policy.processor)
    collect.run(cfg, out, actor, "ckpt0")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # a lost shard is regenerated identically
    again = tmp_path / "again"
    again.mkdir()
    (again / shard_path(out, 0).name).write_bytes(shard_path(out, 0).read_bytes())
    (again / "INPUTS.json").write_bytes((out / "INPUTS.json").read_bytes())  # what made that shard
    collect.run(cfg, again, actor, "ckpt0")
    assert read_stage(again).equals(read_stage(out))


def sampler_vs_trainer_gaps(policy, cfg: Config, out: Path) -> list[float]:
    """|behaviour log-prob - score's log-prob| for every response token of the collected shards."""
    df = read_stage(out)
    _, _, token_lp = score.score_rows(policy, df, cfg, batch_size=3)
    gaps = [
        abs(a - b)
        for mine, theirs in zip(token_lp, df["behavior_logprobs"].to_list())
        for a, b in zip(mine, theirs)
    ]
    assert len(gaps) == df["response_token_ids"].list.len().sum()
    return gaps


def test_sampler_logprobs_match_score_per_token(collected, policy):
    cfg, out = collected
    # fp32, batched left-padded generate vs right-padded scoring forward
    assert max(sampler_vs_trainer_gaps(policy, cfg, out)) < 1e-3


def test_score_adds_gae_columns(scored, collected):
    cfg, out, manifest = scored
    df = read_stage(out, SCORED_SCHEMA)
    assert manifest["rows"] == df.height == read_stage(collected[1]).height
    assert manifest["logprob_gap_max"] < 1e-3
    for ep in df.partition_by("episode_id"):
        ep = ep.sort("step")
        last = ep.row(ep.height - 1, named=True)
        # a terminated episode's last advantage is r - V(s)
        assert last["advantage"] == pytest.approx(last["reward"] - last["value"], abs=1e-5)
        assert ep["return"].to_list() == pytest.approx((ep["advantage"] + ep["value"]).to_list(), abs=1e-5)


def test_update_starts_at_ratio_one(scored, policy):
    cfg, out, _ = scored
    df = read_stage(out, SCORED_SCHEMA)
    with torch.no_grad():
        new = update.minibatch_outputs(policy, df[:4], cfg)["action_logprobs"]
    assert new.tolist() == pytest.approx(df["old_logprob"][:4].to_list(), abs=1e-4)


def test_update_writes_a_changed_checkpoint_and_reports(scored, tiny_model_dir, tmp_path):
    cfg, out, _ = scored
    ckpt = tmp_path / "ckpt1"
    stats = update.run(cfg, out, tiny_model_dir, ckpt, report=tmp_path / "update.json")
    for key in ("pg_loss", "v_loss", "approx_kl", "clipfrac", "grad_norm", "tokens_per_s", "learning_rate"):
        assert key in stats
    assert stats["optimizer_steps"] == cfg.update_epochs  # 2 mini-batches of 4 (6 rows) per step
    assert json.loads((tmp_path / "update.json").read_text())["steps"] == stats["steps"]
    new, old = load_policy(ckpt), load_policy(tiny_model_dir)
    assert new.meta["update_index"] == 1 and new.meta["parent"] == str(tiny_model_dir)
    assert not torch.equal(new.lm_head.weight, old.lm_head.weight)
    assert (ckpt / update.OPTIMIZER_FILE).exists()
    # a rerun is a no-op
    mtime = (ckpt / "vlmagent.json").stat().st_mtime_ns
    update.run(cfg, out, tiny_model_dir, ckpt)
    assert (ckpt / "vlmagent.json").stat().st_mtime_ns == mtime
    # the schedule position travels in the checkpoint
    assert update.scheduled_lr(cfg, 1) < update.scheduled_lr(cfg, 0) == cfg.learning_rate


def test_value_head_takes_its_own_learning_rate(scored, tiny_model_dir, tmp_path):
    """Adam's first step moves each weight by about its lr: the value head's and the policy's differ 100x."""
    cfg, out, _ = scored
    one_step = {"update_epochs": 1, "minibatch_size": 64, "grad_accum": 1, "max_grad_norm": 1e9}
    lrs = {"learning_rate": 1e-5, "min_learning_rate": 1e-5, "value_learning_rate": 1e-3}
    stats = update.run(small_cfg(**one_step, **lrs), out, tiny_model_dir, tmp_path / "ckpt1")
    assert stats["optimizer_steps"] == 1
    new, old = load_policy(tmp_path / "ckpt1"), load_policy(tiny_model_dir)
    moved_value = max(
        (a - b).abs().max().item() for a, b in zip(new.value_head.parameters(), old.value_head.parameters())
    )
    moved_head = (new.lm_head.weight - old.lm_head.weight).abs().max().item()
    assert 0.5e-3 < moved_value <= 1.01e-3
    assert 0.5e-5 < moved_head <= 1.01e-5
    # the next update keeps the ratio on the schedule and resumes Adam in both groups
    update.run(small_cfg(**one_step, **lrs), out, tmp_path / "ckpt1", tmp_path / "ckpt2")
    state = torch.load(tmp_path / "ckpt2" / update.OPTIMIZER_FILE, weights_only=True)
    assert [g["lr"] for g in state["param_groups"]] == [1e-5, 1e-3]
    assert {float(m["step"]) for m in state["state"].values()} >= {2.0}


def test_ent_coef_bonus_reaches_the_weights(scored, tiny_model_dir, tmp_path):
    """ent_coef > 0 changes the update (the fused log-prob's entropy has a gradient), reaching the backbone."""
    cfg, out, _ = scored
    one_step = {"update_epochs": 1, "minibatch_size": 64, "grad_accum": 1, "max_grad_norm": 1e9}
    plain = update.run(small_cfg(**one_step), out, tiny_model_dir, tmp_path / "plain")
    bonus = update.run(small_cfg(**one_step, ent_coef=10.0), out, tiny_model_dir, tmp_path / "bonus")
    assert plain["entropy"] == 0.0 and bonus["entropy"] > 0  # not computed at ent_coef = 0
    assert bonus["pg_loss"] == pytest.approx(plain["pg_loss"])  # the same first forward pass
    a = dict(load_policy(tmp_path / "plain").model.named_parameters())
    b = dict(load_policy(tmp_path / "bonus").model.named_parameters())
    differs = {name for name in a if not torch.equal(a[name], b[name])}
    assert any("lm_head" in name for name in differs)
    assert any("embed_tokens" in name or "layers" in name for name in differs)


def test_ent_coef_sign_is_bonus_or_penalty(scored, tiny_model_dir, tmp_path):
    """ent_coef > 0 raises the entropy of the trained tokens, < 0 (a penalty, to sharpen) lowers it."""
    cfg, out, _ = scored
    one_step = {"update_epochs": 1, "minibatch_size": 64, "grad_accum": 1, "max_grad_norm": 1e9}
    rows = read_stage(out, SCORED_SCHEMA)
    probe = small_cfg(ent_coef=1.0)  # any non-zero value makes minibatch_outputs compute entropies

    def entropy_after(ent_coef: float) -> float:
        ckpt = tmp_path / f"ent{ent_coef}"
        stats = update.run(small_cfg(**one_step, ent_coef=ent_coef), out, tiny_model_dir, ckpt)
        assert stats["optimizer_steps"] == 1
        with torch.no_grad():
            return update.minibatch_outputs(load_policy(ckpt), rows, probe)["entropy"].mean().item()

    plain, bonus, penalty = entropy_after(0.0), entropy_after(10.0), entropy_after(-10.0)
    assert penalty < plain - 1e-3 and bonus > plain + 1e-3, (penalty, plain, bonus)


def test_nan_loss_stops_without_a_checkpoint(scored, tiny_model_dir, tmp_path):
    """A NaN in the scored rows is named where it is read; a NaN the model itself makes (here a weight)
    stops the update at its loss. Neither leaves a checkpoint or a temp dir behind."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmagent.shards import to_table, write_manifest, write_shard

    cfg, out, _ = scored
    df = read_stage(out, SCORED_SCHEMA).with_columns(pl.lit(float("nan"), dtype=pl.Float32).alias("return"))
    bad = tmp_path / "bad"
    write_manifest(bad, [write_shard(to_table(df.to_dicts(), SCORED_SCHEMA), shard_path(bad, 0))])
    with pytest.raises(
        ShardError, match=r"part-00000\.parquet: column 'return' row 0 is not a finite number"
    ):
        update.run(cfg, bad, tiny_model_dir, tmp_path / "ckpt1")

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.get_output_embeddings().weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan_model")
    AutoProcessor.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "nan_model")
    with pytest.raises(update.UpdateError, match="non-finite"):
        update.run(cfg, out, str(tmp_path / "nan_model"), tmp_path / "ckpt1")
    assert not (tmp_path / "ckpt1").exists()
    assert not any(p.name.startswith(".ckpt1") for p in tmp_path.iterdir())


def test_score_refuses_scripted_rows(tmp_path, policy):
    cfg = small_cfg(episodes=2, episodes_per_shard=2)
    collect.run(cfg, tmp_path / "r", collect.oracle_actor(cfg.env, cfg.cot), "oracle")
    with pytest.raises(ShardError, match="response_token_ids"):
        score.run(cfg, tmp_path / "r", policy, tmp_path / "s")


def test_eval_summary_counts_add_up(tmp_path):
    cfg = small_cfg(episodes=20, episodes_per_shard=8, num_envs=5)
    summary = eval_stage.run(cfg, tmp_path / "e", collect.oracle_actor("blackjack", True), "oracle", seed=7)
    df = read_stage(tmp_path / "e")
    assert summary["episodes"] == df["episode_id"].n_unique() == 20
    assert summary["steps"] == df.height
    returns = df.group_by("episode_id").agg(pl.col("reward").sum())["reward"]
    assert summary["success_rate"] == pytest.approx((returns > 0).mean())
    assert summary["parse_failure_rate"] == 0.0


def test_eval_split_across_workers_is_the_same_eval(tmp_path):
    cfg = small_cfg(episodes=20, episodes_per_shard=4, num_envs=4)
    actor = collect.oracle_actor("blackjack", True)
    whole = eval_stage.run(cfg, tmp_path / "one", actor, "oracle", seed=7)
    # worker 1 of 2: the odd shards only, and no summary while the even ones are missing
    assert eval_stage.run(cfg, tmp_path / "two", actor, "oracle", seed=7, worker=(1, 2)) is None
    written = sorted(p.name for p in (tmp_path / "two").glob("*.parquet"))
    assert written == [shard_path(tmp_path / "two", s).name for s in (1, 3)]
    assert not (tmp_path / "two" / eval_stage.SUMMARY).exists()
    # worker 0 of 2, with a helper that finishes shard 4 while worker 0 plays shard 0: not played twice
    helper_shard, played = shard_path(tmp_path / "two", 4), []

    def actor_with_helper(envs, observations, prompt_texts, rng):
        if not helper_shard.exists():
            helper_shard.write_bytes(shard_path(tmp_path / "one", 4).read_bytes())
            played.append(helper_shard.stat().st_mtime_ns)
        return actor(envs, observations, prompt_texts, rng)

    split = eval_stage.run(cfg, tmp_path / "two", actor_with_helper, "oracle", seed=7, worker=(0, 2))
    assert played == [helper_shard.stat().st_mtime_ns]  # written once, by the helper
    assert split == whole
    assert read_stage(tmp_path / "two").equals(read_stage(tmp_path / "one"))


def _collect_cmd(out: Path, policy: Path) -> list[str]:
    run = out.parent / "run"
    if not run.exists():
        run.mkdir()
        (run / "run.toml").write_text("episodes_per_shard = 3\nimage_size = 64\n")
    return [
        sys.executable, "-m", "vlmagent.cli", "collect", "--run", str(run), "--env", "blackjack",
        "--policy", str(policy), "--out", str(out), "--episodes", "12", "--num-envs", "2",
        "--max-new-tokens", "24", "--temperature", "1.0", "--seed", "3",
    ]  # fmt: skip


def test_killed_collect_resumes_to_the_same_rows(tmp_path, tiny_model_dir):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    runner = CliRunner()
    assert runner.invoke(app, _collect_cmd(whole, tiny_model_dir)[3:]).exit_code == 0
    proc = subprocess.Popen(
        _collect_cmd(killed, tiny_model_dir), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not shard_path(killed, 0).exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "MANIFEST.json").exists(), "collect finished before it could be killed"
    assert runner.invoke(app, _collect_cmd(killed, tiny_model_dir)[3:]).exit_code == 0
    assert read_stage(killed).equals(read_stage(whole))
    assert not [p for p in killed.iterdir() if ".tmp" in p.name]


def test_a_stage_lets_go_of_its_model_when_done(tiny_model_dir):
    """loop's name for the actor stays bound while score and update run after collect; the model behind
    it must not stay alive with it (on a GPU: a second copy of the weights beside update's)."""
    import gc

    def live_models() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, torch.nn.Module) and hasattr(o, "generate")}

    before = live_models()
    with collect.served(small_cfg(), str(tiny_model_dir)) as (actor, version):
        loaded = live_models() - before
    assert loaded, "the stage loaded a model"
    assert callable(actor), "the actor is still bound, as in loop"
    assert not loaded & live_models()


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        app, ["collect", "--env", "chess", "--policy", "oracle", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 2
    assert "chess" in res.output
    res = runner.invoke(
        app, ["score", "--rollouts", str(tmp_path / "none"), "--policy", "x", "--out", str(tmp_path)]
    )
    assert res.exit_code == 2 and "none" in res.output
    res = runner.invoke(
        app,
        ["eval", "--env", "blackjack", "--policy", str(tmp_path / "nockpt"), "--out", str(tmp_path / "e")],
    )
    assert res.exit_code == 2 and "nockpt" in res.output
    res = runner.invoke(
        app,
        ["collect", "--env", "blackjack", "--policy", "oracle", "--out", str(tmp_path), "--shards", "3/2"],
    )
    assert res.exit_code == 2 and "--shards" in res.output


def _torchrun_update(
    run: Path, scored: Path, policy: Path, out: Path, nproc: int
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", "29517",
        "-m", "--", "vlmagent", "update", "--run", str(run), "--scored", str(scored),
        "--policy", str(policy), "--out", str(out),
    ]  # fmt: skip
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def test_torchrun_two_ranks_equal_one_process(scored, tiny_model_dir, tmp_path):
    """The same run.toml (the default batch settings: minibatch_size and grad_accum are global) gives the
    single-process update on 2 FSDP gloo ranks: several optimizer steps over epochs, a short last
    mini-batch one rank has no share of, and the whole checkpoint and optimizer state."""
    from vlmagent.shards import to_table, write_manifest, write_shard

    cfg, out, _ = scored
    df = read_stage(out, SCORED_SCHEMA)
    mb, accum = Config().minibatch_size, Config().grad_accum
    # 1.5 optimizer steps' worth and one more (rows repeat: the update reads each as its own step), so
    # the last accumulation group is short and the last mini-batch holds one step, which rank 1 lacks
    n = mb * accum * 3 // 2 + 1
    rows = pl.concat([df] * (n // df.height + 1))[:n]
    odd = tmp_path / "scored"
    write_manifest(odd, [write_shard(to_table(rows.to_dicts(), SCORED_SCHEMA), shard_path(odd, 0))])
    run = tmp_path / "run"
    run.mkdir()
    # a huge Adam eps makes the step proportional to the gradient: averaging errors show, float noise doesn't
    settings = {
        "learning_rate": 0.1,
        "adam_eps": 1.0,
        "max_grad_norm": 1e9,
        "image_size": 64,
        "update_epochs": 2,
    }
    toml = "".join(f"{k} = {v}\n" for k, v in settings.items()) + 'env = "blackjack"\ntemperature = 1.0\n'
    (run / "run.toml").write_text(toml)
    single = update.run(load_config(run / "run.toml"), odd, tiny_model_dir, tmp_path / "single")
    assert single["optimizer_steps"] == 4  # 2 per epoch
    res = _torchrun_update(run, odd, tiny_model_dir, tmp_path / "ddp", nproc=2)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    a, b, parent = (
        load_policy(p).model.state_dict() for p in (tmp_path / "single", tmp_path / "ddp", tiny_model_dir)
    )
    step = max((a[k] - parent[k]).abs().max().item() for k in a)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert step > 1e-4
    assert diff < 1e-3 * step
    stats = json.loads((tmp_path / "ddp" / "update.json").read_text())
    assert (stats["ranks"], stats["sharding"]) == (2, "fsdp")
    assert single["sharding"] == "replicated"
    for key in ("steps", "optimizer_steps", "epochs"):
        assert stats[key] == single[key], key
    for key in ("pg_loss", "v_loss", "approx_kl", "explained_variance"):
        assert stats[key] == pytest.approx(single[key], rel=1e-3, abs=1e-6), key
    # Adam's moments were saved whole, under the same names: the next update of either resumes them
    opt_a, opt_b = (torch.load(tmp_path / p / "optimizer.pt", weights_only=True) for p in ("single", "ddp"))
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for name, moments in opt_a["state"].items():
        torch.testing.assert_close(moments["exp_avg"], opt_b["state"][name]["exp_avg"], rtol=1e-3, atol=1e-6)
    again = update.run(small_cfg(update_epochs=1, grad_accum=1000), odd, tmp_path / "ddp", tmp_path / "next")
    assert again["update_index"] == 1 and again["optimizer_steps"] == 1
    resumed = torch.load(tmp_path / "next" / "optimizer.pt", weights_only=True)["state"]
    steps = {float(resumed[name]["step"]) for name in opt_b["state"]}
    assert steps == {single["optimizer_steps"] + 1.0}  # Adam went on from there


def test_torchrun_needs_a_mini_batch_that_splits_over_the_ranks(scored, tiny_model_dir, tmp_path):
    _, out, _ = scored
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.toml").write_text('env = "blackjack"\nminibatch_size = 3\n')
    res = _torchrun_update(run, out, tiny_model_dir, tmp_path / "ddp", nproc=2)
    assert res.returncode != 0
    assert "minibatch_size = 3 does not divide by the 2 torchrun ranks" in res.stderr
    assert not (tmp_path / "ddp").exists()


def test_alfworld_runs_through_every_stage(policy, tiny_model_dir, tmp_path):
    pytest.importorskip("textworld", reason="ALFWorld needs the alfworld extra: pip install -e '.[alfworld]'")
    cfg = small_cfg(
        env="alfworld", episodes=2, episodes_per_shard=2, num_envs=2, max_new_tokens=6, update_epochs=1
    )
    actor = collect.model_actor(cfg, HFBackend(policy), policy.processor)
    collect.run(cfg, tmp_path / "rollouts", actor, "ckpt0")
    df = read_stage(tmp_path / "rollouts")
    assert df["episode_id"].n_unique() == 2
    # a random tiny model never names an admissible command: the env judged the raw text, -1 each step
    failed = df.filter(~pl.col("parse_ok"))
    assert failed.height > 0 and (failed["reward"] <= -1 + 1e-6).all() and failed["action"].is_null().all()
    assert df.group_by("episode_id").len()["len"].max() == 50  # truncated at the paper's 50 steps
    score.run(cfg, tmp_path / "rollouts", policy, tmp_path / "scored")
    stats = update.run(cfg, tmp_path / "scored", tiny_model_dir, tmp_path / "ckpt1")
    assert stats["steps"] == df.height
    summary = eval_stage.run(
        small_cfg(env="alfworld", episodes=2, episodes_per_shard=2),
        tmp_path / "eval",
        collect.oracle_actor("alfworld", True),
        "oracle",
    )
    assert summary["success_rate"] == 1.0
    assert read_stage(tmp_path / "eval")["env"].unique().to_list() == ["alfworld-heldout"]  # held-out games


def test_alfworld_games_command_makes_the_games_a_run_plays(tmp_path):
    pytest.importorskip("textworld", reason="ALFWorld needs the alfworld extra: pip install -e '.[alfworld]'")
    runner = CliRunner()
    for split, seed in (("train", 7), ("heldout", 8)):
        result = runner.invoke(
            app, ["alfworld-games", str(tmp_path / "games" / split), "--per-type", "1", "--seed", str(seed)]
        )
        assert result.exit_code == 0, result.output
    made = {p.parent.parent.name for p in (tmp_path / "games").glob("*/*/*/game.tw-pddl")}
    assert len(made) == 12  # one per task type and split (the folder names the object and scene)
    cfg = small_cfg(env="alfworld", episodes=6, episodes_per_shard=3, num_envs=3)
    cfg.alfworld_games = str(tmp_path / "games")
    summary = eval_stage.run(cfg, tmp_path / "eval", collect.oracle_actor("alfworld", True), "oracle")
    assert summary["success_rate"] == 1.0
    games = {json.loads(i)["game"] for i in read_stage(tmp_path / "eval")["info"]}
    assert games and all(g.split("/")[0] in made for g in games)
    assert all((tmp_path / "games" / "heldout" / g).is_dir() for g in games)  # eval plays the held-out split


def test_a_checkpoints_sampling_defaults_do_not_change_what_collect_samples(policy, tmp_path):
    """Instruct checkpoints (Qwen2-VL-Instruct) ship sampling defaults in generation_config.json
    (a repetition_penalty among them): generate fills what we leave unset from it, so the behaviour
    policy would not be softmax(logits / T), the one score and update compute. Here absurd defaults:
    the log-probs the sampler recorded must still be the trainer's, and the checkpoint's own config is
    left as it was."""
    own = policy.model.generation_config
    policy.model.generation_config = copy.deepcopy(own)
    policy.model.generation_config.repetition_penalty = 50.0
    policy.model.generation_config.no_repeat_ngram_size = 1
    try:
        cfg = small_cfg()
        out = tmp_path / "rollouts"
        collect.run(cfg, out, collect.model_actor(cfg, HFBackend(policy), policy.processor), "ckpt0")
        assert max(sampler_vs_trainer_gaps(policy, cfg, out)) < 1e-3
        assert policy.model.generation_config.repetition_penalty == 50.0
    finally:
        policy.model.generation_config = own


def test_target_kl_stops_the_epochs_early(scored, tiny_model_dir, tmp_path):
    """Two mini-batches per epoch, a step after each: the second sees the first's step, so epoch 0's
    mean approx KL is > 0 and any tiny target_kl ends the update after it."""
    cfg, out, _ = scored
    over = {"update_epochs": 3, "grad_accum": 1}
    full = update.run(small_cfg(**over), out, tiny_model_dir, tmp_path / "full")
    early = update.run(small_cfg(**over, target_kl=1e-12), out, tiny_model_dir, tmp_path / "early")
    assert full["epochs"] == 3 and full["optimizer_steps"] == 6
    assert early["epochs"] == 1 and early["optimizer_steps"] == 2


def test_norm_adv_false_trains_on_the_scored_advantages(scored):
    cfg, out, _ = scored
    df = read_stage(out, SCORED_SCHEMA)
    raw = update.targets_of(df, small_cfg(norm_adv=False), torch.device("cpu")).advantages
    assert raw.tolist() == df["advantage"].to_list()
    normed = update.targets_of(df, small_cfg(norm_adv=True), torch.device("cpu")).advantages
    assert normed.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert normed.std().item() == pytest.approx(1.0, abs=1e-5)


def test_parse_failure_penalty_adds_the_penalty_to_the_same_steps(tmp_path):
    """An unparseable response steps the same random legal action in both modes; `penalty` also pays
    parse_penalty on each such step."""

    def babble(envs, observations, prompt_texts, rng):
        return [collect.Completion("no action here", p) for p in prompt_texts]

    rows = {}
    for mode in ("random", "penalty"):
        cfg = small_cfg(parse_failure=mode, parse_penalty=-0.5, episodes=3)
        collect.run(cfg, tmp_path / mode, babble, "babble")
        rows[mode] = read_stage(tmp_path / mode).sort("episode_id", "step")
    rnd, pen = rows["random"], rows["penalty"]
    assert not any(pen["parse_ok"].to_list())
    assert pen["env_seed"].to_list() == rnd["env_seed"].to_list()
    assert pen["reward"].to_list() == pytest.approx([r - 0.5 for r in rnd["reward"].to_list()])


def test_random_actor_plays_legal_actions_reproducibly(tmp_path):
    cfg = small_cfg(episodes=3)
    for name in ("a", "b"):
        with collect.served(cfg, "random") as (actor, version):
            collect.run(cfg, tmp_path / name, actor, version)
    a, b = read_stage(tmp_path / "a"), read_stage(tmp_path / "b")
    assert a["policy_version"].unique().to_list() == ["random"]
    assert all(a["parse_ok"].to_list()) and a["action"].null_count() == 0
    assert a.drop("image").equals(b.drop("image"))
    assert eval_stage.summarize(tmp_path / "a")["parse_failure_rate"] == 0.0


def test_loop_evals_after_every_eval_every_th_update(tiny_model_dir, tmp_path):
    from vlmagent.stages import loop

    cfg = small_cfg(
        episodes=2, episodes_per_shard=2, num_envs=2, max_new_tokens=6, update_epochs=1,
        eval_every=1, eval_episodes=2, policy=str(tiny_model_dir),
    )  # fmt: skip
    lines: list[str] = []
    loop.run(cfg, tmp_path / "run", iterations=2, echo=lines.append)
    # eval/000000: the start, the "before" of the learning curve
    assert sorted(p.name for p in (tmp_path / "run" / "eval").iterdir()) == ["000000", "000001", "000002"]
    assert sorted(p.name for p in (tmp_path / "run" / "ckpt").iterdir()) == ["000000", "000001", "000002"]
    assert [line.split(":")[0] for line in lines] == ["initial policy", "start", "iteration 0", "iteration 1"]
    loop.run(cfg, tmp_path / "run", iterations=2, echo=lines.append)  # a rerun: nothing left to do
    assert [line.split(":")[0] for line in lines[4:]] == ["start"]  # the start's summary, read back


def test_grpo_and_gigpo_groups_through_collect_score_and_update(tmp_path):
    """group_size plays each env seed that many times in one shard; grpo scores no value and gives every
    step its episode's advantage against the group; gigpo adds step advantages centred within each
    group of identical observations; update then trains the policy and leaves the value head as it was."""
    from vlmagent.ppo import group_advantages

    # the shipped NumberLine SFT policy: it parses and succeeds often enough for returns to differ within
    # a group (a random model's every step falls back to the same seeded random action)
    ckpt = ROOT / "data" / "quickstart" / "numberline-sft"
    cfg = load_config(
        ckpt.parent / "run.toml", advantage="grpo", group_size=4, episodes=8, episodes_per_shard=4, num_envs=4
    )
    cfg.update_epochs = 1
    policy = load_policy(ckpt)
    actor = collect.model_actor(cfg, HFBackend(policy), policy.processor)
    collect.run(cfg, tmp_path / "rollouts", actor, "ckpt0")
    rollouts = read_stage(tmp_path / "rollouts")
    seeds = rollouts.group_by("shard").agg(pl.col("env_seed").unique())
    assert seeds["env_seed"].list.len().to_list() == [1, 1]  # one seed per shard: one group each
    scored = {}
    for name in ("grpo", "gigpo"):
        c = dataclasses.replace(cfg, advantage=name)
        score.run(c, tmp_path / "rollouts", policy, tmp_path / name)
        scored[name] = read_stage(tmp_path / name, SCORED_SCHEMA).sort("episode_id", "step")
    grpo_df = scored["grpo"]
    assert (grpo_df["value"] == 0).all()
    per_episode = grpo_df.group_by("episode_id", maintain_order=True).agg(
        pl.col("advantage").unique(), pl.col("reward").sum(), pl.col("env_seed").first()
    )
    assert per_episode["advantage"].list.len().max() == 1  # one advantage per episode
    want = group_advantages(
        torch.tensor(per_episode["reward"].to_list(), dtype=torch.float64),
        torch.tensor(per_episode["env_seed"].to_list()),
    )
    got = torch.tensor([a[0] for a in per_episode["advantage"].to_list()], dtype=torch.float64)
    assert want.abs().max() > 0, "every group drew equal returns: nothing tested"
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # gigpo's step part: centred over the steps sharing an observation (first steps of a group at least)
    step = scored["gigpo"].with_columns(part=pl.col("advantage") - grpo_df["advantage"])
    anchors = step.group_by("env_seed", "image", "prompt_token_ids").agg(pl.col("part").sum(), n=pl.len())
    assert anchors["n"].max() >= 3
    assert anchors["part"].abs().max() < 1e-4
    assert step["part"].abs().max() > 0.1  # steps from a shared observation did differ in return
    stats = update.run(
        dataclasses.replace(cfg, advantage="gigpo"), tmp_path / "gigpo", ckpt, tmp_path / "ckpt1"
    )
    assert math.isnan(stats["explained_variance"])
    before, after = load_policy(ckpt), load_policy(tmp_path / "ckpt1")
    for a, b in zip(before.value_head.parameters(), after.value_head.parameters(), strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(before.model.parameters(), after.model.parameters()))

    # skip_zero_advantage trains on the steps whose groups differed, and on nothing when none did
    skip = dataclasses.replace(cfg, advantage="gigpo", skip_zero_advantage=True)
    zero = int((scored["gigpo"]["advantage"].abs() <= update.ZERO_ADVANTAGE).sum())
    assert zero > 0, "every step had an advantage: nothing skipped"
    stats = update.run(skip, tmp_path / "gigpo", tmp_path / "ckpt1", tmp_path / "ckpt2")
    assert (stats["steps"], stats["skipped_steps"]) == (scored["gigpo"].height - zero, zero)
    uniform = tmp_path / "uniform"  # the same steps, every group's episodes returning the same
    table = scored["gigpo"].with_columns(pl.col("advantage") * 0).to_arrow().cast(SCORED_SCHEMA)
    write_manifest(uniform, [write_shard(table, shard_path(uniform, 0))])
    uniform_rows = table.num_rows
    stats = update.run(skip, uniform, tmp_path / "ckpt1", tmp_path / "ckpt3")
    assert (stats["steps"], stats["optimizer_steps"]) == (0, 0)
    kept = load_policy(tmp_path / "ckpt3")
    assert all(torch.equal(a, b) for a, b in zip(after.model.parameters(), kept.model.parameters()))
    assert kept.meta["update_index"] == after.meta["update_index"] + 1  # the schedule still advances
    # without it too, an update with no signal at all is no step: Adam's moments from ckpt1 would carry on
    plain = dataclasses.replace(skip, skip_zero_advantage=False)
    stats = update.run(plain, uniform, tmp_path / "ckpt1", tmp_path / "ckpt4")
    assert (stats["steps"], stats["skipped_steps"], stats["optimizer_steps"]) == (0, uniform_rows, 0)
    kept = load_policy(tmp_path / "ckpt4")
    assert all(torch.equal(a, b) for a, b in zip(after.model.parameters(), kept.model.parameters()))
    # with an entropy bonus the same steps have a gradient, and they train
    stats = update.run(
        dataclasses.replace(plain, ent_coef=0.01), uniform, tmp_path / "ckpt1", tmp_path / "ckpt5"
    )
    assert (stats["steps"], stats["skipped_steps"]) == (uniform_rows, 0)
    moved = load_policy(tmp_path / "ckpt5")
    assert any(not torch.equal(a, b) for a, b in zip(after.model.parameters(), moved.model.parameters()))


def test_group_size_plays_each_seed_group_size_times_and_eval_does_not(tmp_path):
    one, sample = collect.episode_seeds(7, 2, 1, 6)
    state = np.random.SeedSequence([7, 2, 1]).generate_state(7, dtype=np.uint32)
    assert (one, sample) == (state[:6].tolist(), int(state[6]))  # group_size 1: the seeds runs always had
    grouped, _ = collect.episode_seeds(7, 2, 1, 6, group_size=3)
    assert grouped == [grouped[0]] * 3 + [grouped[3]] * 3 and grouped[0] != grouped[3]
    cfg = small_cfg(group_size=3, episodes=6, eval_episodes=6)
    eval_stage.run(cfg, tmp_path / "eval", collect.oracle_actor("blackjack", True), "oracle")
    assert read_stage(tmp_path / "eval")["env_seed"].n_unique() == 6
