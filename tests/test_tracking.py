"""tracker = "tensorboard": loop logs each iteration's records once, read back from the event files."""

import json

import pytest
from conftest import TOY_RUN_TOML
from typer.testing import CliRunner

from vlmagent.cli import app

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

RUN_TOML = TOY_RUN_TOML + 'tracker = "tensorboard"\n'


def invoke(*args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


def events(run) -> EventAccumulator:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_loop_logs_every_record_once_to_tensorboard(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.toml").write_text(RUN_TOML + f'policy = "{tiny_model_dir}"\n')
    invoke("loop", "--run", run, "--iterations", 2)
    acc = events(run)
    scalar = lambda tag: [(e.step, e.value) for e in acc.Scalars(tag)]  # noqa: E731
    update = [json.loads((run / f"iter/00000{k}/update.json").read_text()) for k in (0, 1)]
    assert scalar("update/approx_kl") == [(k, pytest.approx(update[k]["approx_kl"])) for k in (0, 1)]
    evals = [json.loads((run / f"eval/00000{k}/summary.json").read_text()) for k in (0, 2)]
    assert scalar("eval/success") == [(0, evals[0]["success_rate"]), (2, evals[1]["success_rate"])]
    assert [step for step, _ in scalar("train/success")] == [0, 1]
    texts = acc.Tensors("samples/0/text_summary")
    assert [t.step for t in texts] == [0, 1] and b"**response**" in texts[0].tensor_proto.string_val[0]
    image = acc.Images("samples/0")[0]
    assert image.step == 0 and image.width == 64 and image.height == 64

    # a rerun (and report --tracker) logs nothing twice; a lost record (a kill between two) comes back
    files = sorted(p.name for p in (run / "tensorboard").iterdir())
    invoke("loop", "--run", run, "--iterations", 2)
    assert "0 new records" in invoke("report", run, "--tracker", "tensorboard")
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == files
    (run / "tensorboard" / "events.out.tfevents.000001.update").unlink()
    assert "1 new records" in invoke("report", run, "--tracker", "tensorboard")
    assert len(events(run).Scalars("update/approx_kl")) == 2


def test_report_logs_a_run_made_without_a_tracker(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.toml").write_text(TOY_RUN_TOML + f'policy = "{tiny_model_dir}"\n')
    invoke("loop", "--run", run, "--iterations", 1)
    assert not (run / "tensorboard").exists()
    out = invoke("report", run, "--tracker", "tensorboard")
    assert "5 new records" in out  # iteration 0: train, samples, update, eval; iteration 1: eval
    assert [e.step for e in events(run).Scalars("eval/success")] == [0, 1]
