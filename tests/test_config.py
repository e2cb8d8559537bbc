"""load_config's rejections (each names what is wrong) and `vlmagent config`."""

import json

import pytest
from typer.testing import CliRunner

from vlmagent.cli import app
from vlmagent.config import Config, load_config, save_config


@pytest.mark.parametrize(
    "text,match",
    [
        ('env = "numberline"\nepisodez = 3\n', "unknown config key.*episodez"),
        ("env = \n", "run.toml"),  # not TOML
        ('episodes = "many"\n', "episodes = 'many' should be int"),
        ("cot = 1\n", "cot = 1 should be bool"),
        ('parse_failure = "retry"\n', "parse_failure = 'retry': expected auto, random, penalty or env"),
        ("demo_random_frac = 1.5\n", r"demo_random_frac = 1.5: expected a share in \[0, 1\]"),
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
