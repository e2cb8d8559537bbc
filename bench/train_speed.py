"""Where one training step's time goes on this machine, and the most each proposed speed-up can give.

A step of `sft` (and each mini-batch of `update`, the same `forward_hidden` + fused log-prob) on a task's
recipe, the tiny model and the recipe's batch: the step's time split into image preprocessing (the
processor on the stored PNGs), the frozen vision tower + projector, the matrix products (aten mm /
addmm / bmm, with their FLOPs), attention, and the rest (norms, activations, the optimizer); the share of
the tokens fed that are padding; the matrix products' GFLOP/s against this core's best on a large
product. The last column is Amdahl's bound on the step's speed-up if padding cost nothing and the
images were preprocessed and encoded once (the remedies issue 19 item 4 proposes): what they can give
at most, before writing them. `--update RUN:K` adds the same split for PPO mini-batches of a loop run's iteration K
(model rollouts, whose response lengths vary more than the demos').

    python bench/train_speed.py                                # the four card tasks, 10 steps each
    python bench/train_speed.py --tasks blackjack --steps 20 --update runs/learn/blackjack:3
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.profiler import ProfilerActivity, profile

from vlmagent.config import Config, load_config
from vlmagent.policy.load import load_policy, model_inputs_for
from vlmagent.policy.tiny import init_model
from vlmagent.rundir import ckpt_dir, scored_dir
from vlmagent.shards import SCORED_SCHEMA, read_stage
from vlmagent.stages import demos
from vlmagent.stages.sft import batch_indices, make_optimizer, sft_loss, tokenize_rows
from vlmagent.stages.update import make_optimizer as ppo_optimizer
from vlmagent.stages.update import minibatch_backward, minibatch_outputs, targets_of

ROOT = Path(__file__).resolve().parent.parent
MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::addmm_", "aten::baddbmm"}


def recipe_config(task: str, run: Path) -> tuple[Config, dict]:
    recipe = tomllib.loads((ROOT / "recipes" / f"{task}.toml").read_text())
    return load_config(None, **{**recipe["run"], "run_name": run.name}), recipe["recipe"]


def peak_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This process's best fp32 GFLOP/s on an n x n x n product (the ceiling the model's products aim at)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def split(step, images: list[list[bytes | None]], policy) -> dict[str, float]:
    """Median seconds per step of `step(i)` over the batches (a busy moment on a shared core moves a mean),
    and the shares of its parts (one profiled step)."""
    step(0)  # warm-up: allocator, first-call paths
    n = len(images)
    seconds = statistics.median(_timed(lambda i=i: step(i)) for i in range(1, n))
    pre = sum(_timed(lambda im=im: model_inputs_for(policy, im)) for im in images[1:]) / (n - 1)
    vision = sum(_timed(lambda im=im: encode_images(policy, im)) for im in images[1:]) / (n - 1) - pre
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        step(1)
    events = prof.key_averages()
    # shares of the ops' time outside preprocessing (the processor's numpy work runs no aten op)
    total = sum(e.self_cpu_time_total for e in events) / (1 - pre / seconds)
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMUL)
    attn = sum(e.self_cpu_time_total for e in events if "scaled_dot_product" in e.key)
    flops = sum(e.flops for e in events if e.key in MATMUL)
    return {
        "seconds": seconds,
        "pre": pre / seconds,
        "vision": max(vision, 0.0) / seconds,
        "matmul": mm / total,
        "attention": attn / total,
        "gflops": flops / (mm / 1e6) / 1e9 if mm else 0.0,
    }


def with_compile(step, n: int, policy, first, eager: torch.Tensor) -> dict[str, float]:
    """The same steps with the language model under torch.compile (it fuses the `rest`: norms, rotary,
    activations), from the weights and optimizer state the eager steps started from: the seconds of the
    first two steps (compiling the inference and training graphs), ms per step after, and how far
    `first()` (the first batch's loss or log-probs, no gradient) moves from `eager`, its eager value."""
    lm = policy.family.backbone(policy.model).language_model
    lm.forward = torch.compile(lm.forward, dynamic=True)  # varying batch widths: one graph, not one per width
    t = time.perf_counter()
    diff = (first() - eager).abs().max().item()
    step(0)
    step(1)
    compile_s = time.perf_counter() - t
    seconds = statistics.median(_timed(lambda i=i: step(i)) for i in range(2, n))
    return {"compiled": seconds, "compile_s": compile_s, "diff": diff, "scale": eager.abs().max().item()}


def padding(prompts: list[list[int]], responses: list[list[int]]) -> tuple[int, int]:
    """(tokens fed, real tokens) of one right-padded batch as `forward_hidden` builds it."""
    lens = [len(p) + len(r) - 1 for p, r in zip(prompts, responses, strict=True)]
    return max(lens) * len(lens), sum(lens)


@torch.no_grad()
def encode_images(policy, images: list[bytes | None]) -> None:
    """The frozen vision tower + projector on a batch's images, preprocessing included."""
    inputs = model_inputs_for(policy, images)
    policy.family.backbone(policy.model).get_image_features(pixel_values=inputs["pixel_values"])


def sft_row(task: str, steps: int, work: Path, compiled: bool) -> dict:
    cfg, knobs = recipe_config(task, work / task)
    base = init_model(
        work / task / "base", knobs.get("model_size", "tiny"), cfg.seed, knobs["model_image_size"],
        knobs["model_patch_size"],
    )  # fmt: skip
    demos.run(dataclasses.replace(cfg, episodes=64, episodes_per_shard=64), work / task / "demos")
    df = read_stage(work / task / "demos")
    policy = load_policy(base)
    params, optimizer = make_optimizer(cfg, policy)
    prompts, responses = tokenize_rows(policy, df)
    images = df["image"].to_list()
    batches = [batch_indices(df.height, cfg.sft_batch_size, s, cfg.seed) for s in range(steps + 1)]

    def step(i: int) -> None:  # what stages/sft.py's train loop does per optimizer step
        idx = batches[i]
        loss = sft_loss(
            policy, [prompts[j] for j in idx], [responses[j] for j in idx], [images[j] for j in idx]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    @torch.no_grad()
    def first() -> torch.Tensor:
        idx = batches[0]
        return sft_loss(
            policy, [prompts[j] for j in idx], [responses[j] for j in idx], [images[j] for j in idx]
        )

    policy.model.train()
    start = copy.deepcopy((policy.model.state_dict(), optimizer.state_dict()))
    eager = first()
    row = split(step, [[images[j] for j in idx] for idx in batches], policy)
    if compiled:  # again from the same start
        policy.model.load_state_dict(start[0])
        optimizer.load_state_dict(start[1])
        row |= with_compile(step, len(batches), policy, first, eager)
    fed, real = map(sum, zip(*(padding([prompts[j] for j in b], [responses[j] for j in b]) for b in batches)))
    resp = sum(len(responses[j]) for b in batches[1:] for j in b) / steps
    return {**row, "what": f"{task} sft", "batch": cfg.sft_batch_size, "pad": 1 - real / fed,
            "fed": fed / len(batches), "resp_tok_s": resp / row["seconds"]}  # fmt: skip


def update_row(run: Path, k: int, steps: int, compiled: bool) -> dict:
    """PPO mini-batches (forward, ppo_loss, backward; the optimizer step every grad_accum) of iteration k's
    scored stage of a loop run, from the checkpoint that collected it, with the run's settings."""
    cfg = load_config(run / "run.toml")
    df = read_stage(scored_dir(run, k), SCORED_SCHEMA)
    policy = load_policy(ckpt_dir(run, k))
    optimizer = ppo_optimizer(policy, cfg, cfg.learning_rate)
    targets = targets_of(df, cfg, policy.device)
    perm = torch.randperm(df.height, generator=torch.Generator().manual_seed(0))
    batches = [perm[m * cfg.minibatch_size : (m + 1) * cfg.minibatch_size] for m in range(steps + 1)]
    batches = [b for b in batches if len(b)]

    def step(i: int) -> None:
        idx = batches[i]
        minibatch_backward(policy, df[idx.tolist()], idx, targets, cfg, cfg.grad_accum, where="bench")
        if (i + 1) % cfg.grad_accum == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def first() -> torch.Tensor:
        return minibatch_outputs(policy, df[batches[0].tolist()], cfg)["action_logprobs"]

    policy.model.train()
    rows = [df[b.tolist()] for b in batches]
    start = copy.deepcopy((policy.model.state_dict(), optimizer.state_dict()))
    eager = first()
    row = split(step, [r["image"].to_list() for r in rows], policy)
    if compiled:
        policy.model.load_state_dict(start[0])
        optimizer.load_state_dict(start[1])
        row |= with_compile(step, len(batches), policy, first, eager)
    fed, real = map(
        sum, zip(*(padding(r["prompt_token_ids"].to_list(), r["response_token_ids"].to_list()) for r in rows))
    )
    resp = sum(len(t) for r in rows[1:] for t in r["response_token_ids"].to_list()) / (len(rows) - 1)
    return {**row, "what": f"{cfg.env} update ({run.name})", "batch": cfg.minibatch_size, "pad": 1 - real / fed,
            "fed": fed / len(rows), "resp_tok_s": resp / row["seconds"]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="*", default=["numberline", "ezpoints", "blackjack", "points24"])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per row (after one warm-up step)")
    ap.add_argument(
        "--update",
        nargs="*",
        default=[],
        metavar="RUN:K",
        help="PPO mini-batches of a loop run's iteration K",
    )
    ap.add_argument("--compile", action="store_true", help="also time the steps under torch.compile")
    args = ap.parse_args()
    torch.manual_seed(0)
    peak = peak_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [sft_row(t, args.steps, Path(tmp), args.compile) for t in args.tasks]
    for spec in args.update:
        run, k = spec.rsplit(":", 1)
        rows.append(update_row(Path(run), int(k), args.steps, args.compile))

    table = Table(
        title=f"one training step, {torch.get_num_threads()} thread(s); best 1024^3 fp32 product: {peak:.0f} GFLOP/s"
    )
    for col in ("step", "batch", "ms/step", "resp tok/s", "tokens fed", "padding", "image prep", "vision",
                "matmul", "attention", "rest", "matmul GFLOP/s", "bound: no pad, images once"):  # fmt: skip
        table.add_column(col, justify="left" if col == "step" else "right")
    if args.compile:
        for col in ("compiled ms/step", "speed-up", "compile s", "step-1 diff"):
            table.add_column(col, justify="right")
    for r in rows:
        rest = 1 - r["matmul"] - r["attention"] - r["pre"] - r["vision"]
        # padding costs its share of the backbone's time; preprocessing and the tower can go entirely
        removable = r["pad"] * (r["matmul"] + r["attention"]) + r["pre"] + r["vision"]
        table.add_row(
            r["what"], str(r["batch"]), f"{r['seconds'] * 1e3:.0f}", f"{r['resp_tok_s']:.0f}", f"{r['fed']:.0f}",
            f"{r['pad']:.1%}", f"{r['pre']:.1%}", f"{r['vision']:.1%}", f"{r['matmul']:.1%}",
            f"{r['attention']:.1%}", f"{rest:.1%}", f"{r['gflops']:.0f} ({r['gflops'] / peak:.0%})",
            f"{1 / (1 - removable):.2f}x",
            *([f"{r['compiled'] * 1e3:.0f}", f"{r['seconds'] / r['compiled']:.2f}x", f"{r['compile_s']:.0f}",
               f"{r['diff']:.1e} of {r['scale']:.2g}"] if args.compile else []),
        )  # fmt: skip
    Console(width=250).print(table)


if __name__ == "__main__":
    main()
