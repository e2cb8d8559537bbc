"""Experiment tracking: what a run's files say, per iteration, into TensorBoard (offline) or wandb.

With `tracker = "tensorboard"` in run.toml, `loop` logs each iteration's training episodes, update
statistics, evals and a few sample steps (image, chain of thought, action, reward) into RUN/tensorboard/
(`tensorboard --logdir runs` shows every run); with `"wandb"`, into a wandb run (`pip install wandb`;
WANDB_MODE=offline needs no network). `vlmagent report RUN --tracker tensorboard` logs a run made
without one. The tracker reads only the files the stages wrote, and logs each record once: a rerun
after a kill neither loses one nor logs one twice. `report` stays the offline table and PNG.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlmagent.rundir import rollouts_dir, update_json
from vlmagent.shards import atomic_write, read_json, read_stage
from vlmagent.stages.report import gather

SAMPLES = 2  # episodes per iteration whose first step is logged as an image and a text
TB_DIR = "tensorboard"
WANDB_LOGGED = "wandb_logged.json"


def _numbers(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def records(run: Path, row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Iteration k's records that exist so far (`row`: report.gather's for k): train, update and eval
    scalars, and sample steps of the training episodes."""
    k, out = row["iteration"], {}
    for part in ("train", "eval"):
        scalars = {key.removeprefix(f"{part}_"): v for key, v in row.items() if key.startswith(f"{part}_")}
        if scalars:
            out[part] = {"scalars": scalars}
    if update_json(run, k).exists():  # all of update.json's numbers, not only the table's columns
        out["update"] = {"scalars": _numbers(read_json(update_json(run, k)))}
    if "train" in out:
        df = read_stage(rollouts_dir(run, k))
        first_steps = df.filter(df["step"] == 0).head(SAMPLES).to_dicts()
        out["samples"] = {
            "steps": [
                {
                    "image": r["image"],
                    "text": f"**prompt** (end)\n\n{r['prompt'][-400:]}\n\n**response**\n\n{r['response']}"
                    f"\n\n**action** {r['action']!r} (parsed: {r['parse_ok']}), **reward** {r['reward']}",
                }
                for r in first_steps
            ]
        }
    return out


def check_installed(tracker: str) -> None:
    """Before a run starts: the tracker's package is there (a ValueError saying how to get it)."""
    package = {"tensorboard": "tensorboard", "wandb": "wandb"}.get(tracker)
    if package and importlib.util.find_spec(package) is None:
        raise ValueError(
            f"tracker = {tracker!r}: the {package} package is not installed (pip install {package})"
        )


def log_new(run: Path, tracker: str, name: str = "") -> int:
    """Log every record of the run the tracker has not got yet; the number logged now."""
    if not tracker:
        return 0
    run = Path(run)
    write = _tensorboard if tracker == "tensorboard" else _wandb
    n = 0
    for row in gather(run):
        for part, record in records(run, row).items():
            n += write(run, name or run.resolve().name, row["iteration"], part, record)
    return n


def _tensorboard(run: Path, name: str, k: int, part: str, record: dict[str, Any]) -> int:
    """One event file per (iteration, part), renamed into place when whole: its name is the record's
    "logged" mark (TensorBoard reads every events.out.tfevents.* file of a directory as one run)."""
    from torch.utils.tensorboard import SummaryWriter

    root = run / TB_DIR
    final = root / f"events.out.tfevents.{k:06d}.{part}"
    if final.exists():
        return 0
    tmp = root / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with SummaryWriter(str(tmp)) as w:
        for key, v in record.get("scalars", {}).items():
            w.add_scalar(f"{part}/{key}", v, k)
        for i, step in enumerate(record.get("steps", [])):
            w.add_text(f"samples/{i}", step["text"], k)
            if step["image"] is not None:
                w.add_image(f"samples/{i}", _pixels(step["image"]), k, dataformats="HWC")
    (event,) = tmp.iterdir()
    event.rename(final)
    tmp.rmdir()
    return 1


def _wandb(run: Path, name: str, k: int, part: str, record: dict[str, Any]) -> int:
    """wandb: resumes the run's own wandb run (its id is kept in RUN/wandb_logged.json with what it got)."""
    import wandb  # optional: `pip install wandb`

    marks_file = run / WANDB_LOGGED
    marks = read_json(marks_file) if marks_file.exists() else {"id": wandb.util.generate_id()}
    mark = f"{k:06d}.{part}"
    if mark in marks.get("logged", []):
        return 0
    if wandb.run is None or wandb.run.id != marks["id"]:
        wandb.init(project="vlmagent", name=name, id=marks["id"], resume="allow", dir=str(run))
    data: dict[str, Any] = {f"{part}/{key}": v for key, v in record.get("scalars", {}).items()}
    for i, step in enumerate(record.get("steps", [])):
        data[f"samples/{i}/text"] = wandb.Html(step["text"].replace("\n", "<br>"))
        if step["image"] is not None:
            data[f"samples/{i}/image"] = wandb.Image(_pixels(step["image"]))
    wandb.log(data, step=k)
    marks["logged"] = [*marks.get("logged", []), mark]
    atomic_write(marks_file, json.dumps(marks, indent=1).encode())
    return 1


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
