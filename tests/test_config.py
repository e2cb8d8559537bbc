"""load_config's rejections and `vlmagent config`: every value is checked before a stage does anything;
a bad flag or run.toml field is exit 2 with one line naming the field and where it came from, and nothing
is written."""

import json

import pytest
from typer.testing import CliRunner

from vlmagent.cli import app
from vlmagent.config import FIELDS, Config, load_config, save_config


def invoke(*args) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--episodes", "0"], "episodes = 0"),
        (["--episodes", "-1"], "episodes = -1"),
        (["--num-envs", "0"], "num_envs = 0"),
        (["--seed", "-1"], "seed = -1"),
        (["--temperature", "-1"], "temperature = -1.0"),
        (["--temperature", "nan"], "temperature = nan"),
        (["--temperature", "inf"], "temperature = inf"),
        (["--max-new-tokens", "0"], "max_new_tokens = 0"),
    ],
)
def test_bad_collect_flag_is_one_line_and_writes_nothing(tmp_path, flags, field):
    run = tmp_path / "run"
    code, output = invoke("collect", "--env", "numberline", "--policy", "random", "--run", run, *flags)
    assert code == 2, output
    assert output.count("\n") == 1 and field in output and "the command line" in output, output
    assert not run.exists()  # no run.toml saved with the bad value, no shard


@pytest.mark.parametrize(
    "line, field",
    [
        ("grad_accum = 0", "grad_accum = 0"),
        ("minibatch_size = 0", "minibatch_size = 0"),
        ("update_epochs = 0", "update_epochs = 0"),
        ("gamma = 1.5", "gamma = 1.5"),
        ("learning_rate = -1e-5", "learning_rate = -1e-05"),
        ("demo_random_frac = 2", "demo_random_frac = 2.0"),
        ('backend = "tpu"', "backend = 'tpu'"),
        ("episodes = 1.5", "episodes = 1.5 should be int"),
        ("eval_every = -1", "eval_every = -1"),
    ],
)
def test_bad_run_toml_field_names_the_file(tmp_path, line, field):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.toml").write_text(f'env = "numberline"\n{line}\n')
    code, output = invoke("collect", "--policy", "random", "--run", run)
    assert code == 2, output
    assert output.count("\n") == 1 and str(run / "run.toml") in output and field in output, output
    assert sorted(p.name for p in run.iterdir()) == ["run.toml"]


def test_every_number_has_a_range_and_the_defaults_lie_in_it():
    """A new numeric field without bounds would let 0 or -1 through to a ZeroDivisionError mid-stage."""
    signed = {"parse_penalty", "ent_coef"}  # weights of either sign, never a divisor or a count
    for name, f in FIELDS.items():
        if isinstance(f.default, int | float) and not isinstance(f.default, bool) and name not in signed:
            assert f.metadata["lo"] is not None, name
    load_config(None)  # the defaults pass their own checks


@pytest.mark.parametrize(
    "text,match",
    [
        ('env = "numberline"\nepisodez = 3\n', "unknown config key.*episodez"),
        ("env = \n", "run.toml"),  # not TOML
        ('episodes = "many"\n', "episodes = 'many' should be int"),
        ("cot = 1\n", "cot = 1 should be bool"),
        ('parse_failure = "retry"\n', "parse_failure = 'retry': expected auto, random, penalty or env"),
        ("demo_random_frac = 1.5\n", r"demo_random_frac = 1.5 should be in \[0, 1\]"),
        ("skip_zero_advantage = true\n", "skip_zero_advantage needs advantage = grpo or gigpo"),
        (
            'advantage = "grpo"\ngroup_size = 2\nent_coef = 0.01\nskip_zero_advantage = true\n',
            "skip_zero_advantage needs .* ent_coef = 0",
        ),
    ],
)
def test_load_config_rejects_with_a_line_naming_it(tmp_path, text, match):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_config(path)


def test_load_config_layers_flags_over_toml_and_widens_ints(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('env = "numberline"\nlearning_rate = 1\nepisodes = 8\n')
    cfg = load_config(path, episodes=4, seed=None)
    assert (cfg.env, cfg.episodes, cfg.seed) == ("numberline", 4, 0)  # None: the flag was not given
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    save_config(cfg, tmp_path / "again.toml")
    assert load_config(tmp_path / "again.toml") == cfg


def test_config_command_prints_the_effective_config(tmp_path):
    (tmp_path / "run.toml").write_text('env = "ezpoints"\nent_coef = 0.01\n')
    res = CliRunner().invoke(app, ["config", "--run", str(tmp_path)])
    assert res.exit_code == 0
    shown = json.loads(res.output)
    assert shown["env"] == "ezpoints" and shown["ent_coef"] == 0.01
    assert shown["gamma"] == Config().gamma  # the defaults for what run.toml leaves out
    assert json.loads(CliRunner().invoke(app, ["config"]).output)["env"] == Config().env
    (tmp_path / "run.toml").write_text("gama = 0.5\n")
    res = CliRunner().invoke(app, ["config", "--run", str(tmp_path)])
    assert res.exit_code == 2 and "unknown config key(s) gama" in res.output.replace("\n", "")
