"""sft: supervised fine-tuning on demo (or any trajectory) shards: the warm start RL begins from.

The loss is the mean negative log-likelihood of the response tokens only (prompt and image are
context), at temperature 1, from the fused log-prob: `forward_hidden` keeps the hidden states of the
positions that predict response tokens and nothing else, so there are no [tokens x vocab] logits and
no prompt tokens to mask. Rows with token ids (model rollouts) are used as stored; rows without (the
oracle's demos are text) are tokenized here with the policy's processor, the prompt through
`encode_prompt` exactly as the sampler will see it, the response plus the end-of-turn token.

Resumable: every `sft_save_every` steps the model, the optimizer and the step go to a state checkpoint
beside `out` (`.<name>.sft-state`); a rerun after a kill continues from it, with the same batches (the
order is a function of the seed and the step). The result is a checkpoint in the `update` format
(meta: parent, step) with loss.csv, loss.png and sft.json inside.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vlmagent.config import Config, config_dict, stage_config
from vlmagent.policy.checkpoint import META_FILE, save_checkpoint
from vlmagent.policy.forward import forward_hidden
from vlmagent.policy.load import Policy, encode_prompt, load_policy, model_inputs_for
from vlmagent.policy.logprob import token_logprobs
from vlmagent.policy.lora import with_lora
from vlmagent.ppo import cosine_schedule
from vlmagent.prompts import facts_only as facts_of
from vlmagent.prompts import facts_prompt
from vlmagent.shards import (
    MANIFEST,
    ShardError,
    policy_inputs,
    read_json,
    read_stage,
    sha256_file,
    stage_done,
)

STATE_OPTIMIZER = "sft_optimizer.pt"  # not update's optimizer.pt: Adam must not inherit AdamW's state
LOSS_CSV, LOSS_PNG, REPORT = "loss.csv", "loss.png", "sft.json"


def state_dir(out: Path) -> Path:
    """Where the resumable snapshot lives: beside `out`, hidden (run dirs list only digit-named ckpts)."""
    return out.parent / f".{out.name}.sft-state"


def tokenize_rows(policy: Policy, df: pl.DataFrame) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, response ids) per row: stored ids when the row has them, else from the text."""
    tok = policy.tokenizer
    eos = policy.eos_token_ids[:1]
    cache: dict[tuple, list[int]] = {}  # few distinct prompts: the image only sets how many image tokens
    prompts, responses = [], []
    for row in df.select("prompt", "image", "prompt_token_ids", "response_token_ids", "response").iter_rows(
        named=True
    ):
        if row["response_token_ids"]:
            prompts.append(list(row["prompt_token_ids"]))
            responses.append(list(row["response_token_ids"]))
            continue
        image = row["image"]
        key = (row["prompt"], Image.open(io.BytesIO(image)).size if image is not None else None)
        if key not in cache:
            cache[key] = encode_prompt(policy, image, row["prompt"])[0]
        prompts.append(cache[key])
        responses.append(tok.encode(row["response"], add_special_tokens=False) + eos)
    image_token = policy.family.image_token_id(policy.model)
    if any(image_token in r for r in responses):
        raise ShardError("a response holds the image placeholder token: it cannot be a training target")
    return prompts, responses


def sft_loss(
    policy: Policy,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    images: Sequence[bytes | None],
) -> torch.Tensor:
    """Mean NLL per response token of a batch (temperature 1; prompt tokens are never targets)."""
    hidden = forward_hidden(policy, prompt_ids, response_ids, model_inputs_for(policy, images))
    logp = token_logprobs(hidden.response, policy.lm_head.weight, hidden.response_ids, 1.0)
    return -logp.mean()


def lr_at(cfg: Config, step: int, total: int) -> float:
    """Linear warm-up to sft_lr, then cosine down to a tenth of it."""
    return cosine_schedule(step, total, cfg.sft_lr, 0.1 * cfg.sft_lr, warmup=cfg.sft_warmup)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Rows of optimizer step `step`: epochs of seeded shuffles, so a resumed run sees the same batches."""
    per_epoch = math.ceil(n / batch_size)
    epoch, m = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return perm[m * batch_size : (m + 1) * batch_size].tolist()


def facts_only_rows(df: pl.DataFrame) -> pl.DataFrame:
    """The rows with each response cut to its image facts (`prompts.facts_only`), re-tokenized from text."""
    cut = [facts_of(r) for r in df["response"].to_list()]
    bad = next((i for i, c in enumerate(cut) if c is None), None)
    if bad is not None:
        row = df.row(bad, named=True)
        raise ShardError(
            f"--facts-only: {row['env']} episode {row['episode_id']} step {row['step']}: the response has no "
            f'image facts before a "thoughts" field (facts-only needs CoT responses of a card task)'
        )
    empty = pl.Series("response_token_ids", [[] for _ in cut], dtype=df.schema["response_token_ids"])
    return df.with_columns(pl.Series("response", cut), empty)


def read_data(data: Sequence[Path]) -> pl.DataFrame:
    frames = [read_stage(Path(d)) for d in data]
    df = pl.concat(frames) if frames else pl.DataFrame()
    if df.height == 0:
        raise ShardError(f"{', '.join(map(str, data))}: no rows to train on")
    return df


def run(
    cfg: Config,
    data: Sequence[Path],
    policy_path: str | Path,
    out: Path,
    steps: int | None = None,
    epochs: float | None = None,
    facts_only: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """SFT from `policy_path` on the rows of the stage dirs `data`; checkpoint to `out`; return the stats.

    A no-op (returning the stats) when `out` is this SFT's checkpoint; one made from other inputs is an
    error naming the field, unless `overwrite`. `epochs` overrides `steps`, which defaults to
    `cfg.sft_steps`. `facts_only`: the targets are the responses cut to their image facts (a reading
    warm-up before the full SFT); its first half asks for them under `prompts.facts_prompt` (~40
    tokens), its second half under the task's own prompt (why: recipes/README.md).
    """
    out = Path(out)
    inputs = {
        "stage": "sft",
        "data_manifests_sha256": [
            sha256_file(Path(d) / MANIFEST) if (Path(d) / MANIFEST).exists() else None for d in data
        ],
        **policy_inputs(str(policy_path)),
        "steps": steps,
        "epochs": epochs,
        "facts_only": facts_only,
        **stage_config(cfg, "sft"),
    }
    if stage_done(out, inputs, overwrite):  # an out made from other inputs: exit 2, naming the field
        return {k: v for k, v in read_json(out / REPORT).items() if k != "config"}
    if out.exists() and not overwrite:  # found now, not after the training
        raise ShardError(f"{out}: exists and is not a checkpoint; give another --out, or --overwrite")
    if overwrite:  # start over: not from another run's snapshot (`out` itself is replaced at the save)
        shutil.rmtree(state_dir(out), ignore_errors=True)
    df = read_data(data)
    if facts_only:
        df = facts_only_rows(df)
    steps = step_count(cfg, df.height, steps, epochs)
    state = state_dir(out)
    resume = (state / META_FILE).exists() and stage_done(state, inputs)  # never resume other inputs' snapshot
    policy, start, lineage = load_start(cfg, policy_path, state if resume else None)
    params, optimizer = make_optimizer(cfg, policy)
    history = load_snapshot(state, optimizer) if resume else []
    prompt_ids, response_ids = tokenize_rows(policy, df)
    images = df["image"].to_list()
    reading_steps = steps // 2 if facts_only else 0
    reading_prompt_ids = reading_prompts(policy, df) if reading_steps else prompt_ids

    def batch(step: int) -> tuple[list[list[int]], list[list[int]], list[bytes | None]]:
        idx = batch_indices(df.height, cfg.sft_batch_size, step, cfg.seed)
        prompts_now = reading_prompt_ids if step < reading_steps else prompt_ids
        return [prompts_now[i] for i in idx], [response_ids[i] for i in idx], [images[i] for i in idx]

    def snapshot(step: int) -> None:
        save_snapshot(state, policy, optimizer, history, {"sft_step": step, **lineage, "inputs": inputs})

    seconds, tokens = train(cfg, policy, optimizer, params, batch, range(start, steps), history, snapshot)
    tail = history[-max(1, min(20, len(history))) :]
    stats = {
        "steps": steps,
        "resumed_at": start,
        "rows": df.height,
        "episodes": df["episode_id"].n_unique(),
        "epochs": steps * cfg.sft_batch_size / df.height,
        "first_loss": history[0]["loss"],
        "final_loss": sum(h["loss"] for h in tail) / len(tail),  # mean of the last 20 steps
        "seconds": seconds,  # this process's share (a resumed run counts from its restart)
        "response_tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "parent": lineage["sft_parent"],
        "data": [str(d) for d in data],
        "facts_only": facts_only,
        "reading_prompt_steps": reading_steps,
    }
    save_result(cfg, out, policy, df, history, stats, lineage["source"], inputs, overwrite)
    shutil.rmtree(state, ignore_errors=True)
    return stats


def step_count(cfg: Config, rows: int, steps: int | None, epochs: float | None) -> int:
    """Optimizer steps: `epochs` passes over `rows` when given, else `steps`, else cfg.sft_steps."""
    if epochs is not None:
        steps = math.ceil(epochs * rows / cfg.sft_batch_size)
    steps = cfg.sft_steps if steps is None else steps
    if steps < 1:
        raise ValueError(f"SFT needs at least one step, got {steps}")
    return steps


def load_start(
    cfg: Config, policy_path: str | Path, snapshot: Path | None
) -> tuple[Policy, int, dict[str, str]]:
    """The policy to train, the step it is at and its lineage (sft_parent, source): from the `snapshot` a
    killed run left, else from `policy_path` at step 0."""
    policy = with_lora(load_policy(snapshot or policy_path), cfg)
    if snapshot is None:
        return (
            policy,
            0,
            {"sft_parent": str(policy_path), "source": policy.meta.get("source", str(policy_path))},
        )
    parent = policy.meta.get("sft_parent", str(policy_path))
    lineage = {"sft_parent": parent, "source": policy.meta.get("source", parent)}
    return policy, int(policy.meta.get("sft_step", 0)), lineage


def make_optimizer(cfg: Config, policy: Policy) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW]:
    """AdamW over the model's trained parameters; each group's `scale` multiplies the scheduled lr."""
    # the value head is not trained here: RL fits it from its own returns
    # A randomly initialised vision tower trained at the LM's pace collapses to image-independent
    # features before the LM learns to read them: it gets its own (lower) learning rate, or none.
    if not cfg.train_vision:
        policy.freeze_vision()
    vision = {id(p) for p in policy.vision_parameters()}
    params = [p for p in policy.model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in vision], "scale": 1.0}]
    if any(id(p) in vision for p in params):
        groups.append({"params": [p for p in params if id(p) in vision], "scale": cfg.sft_vision_lr_scale})
    return params, torch.optim.AdamW(groups, lr=cfg.sft_lr, weight_decay=cfg.sft_weight_decay)


def load_snapshot(state: Path, optimizer: torch.optim.Optimizer) -> list[dict[str, float]]:
    """Restore the optimizer from the snapshot in `state`; its loss history."""
    optimizer.load_state_dict(torch.load(state / STATE_OPTIMIZER, weights_only=True))
    return read_json(state / "history.json")


def save_snapshot(
    state: Path,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, float]],
    meta: dict[str, Any],
) -> None:
    """The resumable snapshot: model, optimizer, loss history so far."""
    save_checkpoint(
        state,
        policy,
        meta,
        extra_files={
            STATE_OPTIMIZER: lambda p: torch.save(optimizer.state_dict(), p),
            "history.json": lambda p: p.write_text(json.dumps(history)),
        },
        overwrite=True,
    )


def reading_prompts(policy: Policy, df: pl.DataFrame) -> list[list[int]]:
    """Each row's prompt ids under the short prompt that asks only for the image facts."""
    short = df.with_columns(pl.Series("prompt", [facts_prompt(e) for e in df["env"].to_list()]))
    return tokenize_rows(policy, short)[0]


def train(
    cfg: Config,
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    batch: Callable[[int], tuple[list[list[int]], list[list[int]], list[bytes | None]]],
    steps: range,
    history: list[dict[str, float]],
    snapshot: Callable[[int], None],
) -> tuple[float, int]:
    """The optimizer steps `steps` on `batch(step)` (prompt ids, response ids, images), each step's loss
    appended to `history`, a snapshot every sft_save_every steps; (seconds, response tokens trained on)."""
    policy.model.train()
    t0, tokens = time.perf_counter(), 0
    with Progress(
        TextColumn("[bold]sft[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]} {task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("sft", total=steps.stop, completed=steps.start, loss="", rate="")
        for step in steps:
            prompt_ids, response_ids, images = batch(step)
            lr = lr_at(cfg, step, steps.stop)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["scale"]
            loss = sft_loss(policy, prompt_ids, response_ids, images)
            if not torch.isfinite(loss):
                raise RuntimeError(f"non-finite SFT loss at step {step}; the last snapshot is kept")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
            optimizer.step()
            tokens += sum(len(r) for r in response_ids)
            history.append({"step": step + 1, "loss": loss.item(), "lr": lr, "grad_norm": grad_norm})
            dt = time.perf_counter() - t0
            progress.update(task, advance=1, loss=f"{loss.item():.4f}", rate=f"{tokens / dt:.0f} tok/s")
            if (step + 1) % cfg.sft_save_every == 0 and step + 1 < steps.stop:
                snapshot(step + 1)
    policy.model.eval()
    return time.perf_counter() - t0, tokens


def save_result(
    cfg: Config,
    out: Path,
    policy: Policy,
    df: pl.DataFrame,
    history: list[dict[str, float]],
    stats: dict[str, Any],
    source: str,
    inputs: dict[str, Any],
    overwrite: bool,
) -> None:
    """The checkpoint in `update`'s format (meta: parent, step, inputs), with loss.csv, loss.png and
    sft.json; `overwrite` replaces an `out` made from other inputs."""
    meta = {
        "parent": stats["parent"],
        "step": stats["steps"],
        "source": source,
        "sft": {k: stats[k] for k in ("rows", "epochs")},
        "inputs": inputs,
    }
    title = f"SFT {' '.join(sorted(df['env'].unique()))}{' facts only' if stats['facts_only'] else ''}: {df.height} rows"
    save_checkpoint(
        out,
        policy,
        meta,
        extra_files={
            LOSS_CSV: lambda p: write_loss_csv(history, p),
            LOSS_PNG: lambda p: plot_loss(history, p, title=title),
            REPORT: lambda p: p.write_text(json.dumps({**stats, "config": config_dict(cfg)}, indent=2)),
        },
        overwrite=overwrite,
    )


def write_loss_csv(history: list[dict[str, float]], path: Path) -> None:
    lines = ["step,loss,lr,grad_norm"] + [
        f"{h['step']},{h['loss']:.6f},{h['lr']:.3e},{h['grad_norm']:.4f}" for h in history
    ]
    path.write_text("\n".join(lines) + "\n")


def plot_loss(history: list[dict[str, float]], path: Path, title: str = "SFT loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    loss = [h["loss"] for h in history]
    smooth, ema = [], loss[0]
    for x in loss:  # an exponential moving average makes the trend readable through batch noise
        ema = 0.9 * ema + 0.1 * x
        smooth.append(ema)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, color="tab:blue", alpha=0.3, lw=0.8, label="batch")
    ax.plot(steps, smooth, color="tab:blue", lw=1.5, label="EMA 0.9")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("NLL per response token")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
