"""How far `update`'s optimizer steps move the policy, learning rate against learning rate: PPO's trust
region, measured.

From the checkpoint that collected a loop run's iteration K and its scored steps, update's own first
epoch (its shuffled mini-batches, gradient accumulation, clipping, and Adam as update builds it: fresh
after an SFT checkpoint, loaded after an update) at each --lr; after optimizer steps 1, 2, 4, 8... the
approx KL (Schulman's k3) between the collecting policy and the updated one, and the share of steps
whose ratio is outside [1 - clip_coef, 1 + clip_coef], on a fixed probe of the iteration's steps.
Once most steps are clipped, the rest of the update learns only from the few that are not.

    python bench/update_kl.py runs/learn/blackjack-grpo:0 --lr 4e-5 1e-5 3e-6 1e-6
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from vlmagent.config import load_config
from vlmagent.policy.load import load_policy
from vlmagent.ppo import policy_loss
from vlmagent.rundir import ckpt_dir, scored_dir
from vlmagent.shards import SCORED_SCHEMA, read_stage
from vlmagent.stages.update import (
    OPTIMIZER_FILE,
    load_optimizer,
    make_optimizer,
    minibatch_backward,
    minibatch_outputs,
    optimizer_step,
    set_lr,
    targets_of,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="RUN:K, a loop run and the iteration whose scored steps to update on")
    ap.add_argument("--lr", type=float, nargs="+", default=[4e-5, 1e-5, 3e-6, 1e-6])
    ap.add_argument("--steps", type=int, default=16, help="optimizer steps per learning rate")
    ap.add_argument("--probe", type=int, default=64, help="steps the KL is measured on")
    args = ap.parse_args()
    run, k = Path(args.run.rsplit(":", 1)[0]), int(args.run.rsplit(":", 1)[1])
    cfg = load_config(run / "run.toml")
    df = read_stage(scored_dir(run, k), SCORED_SCHEMA)
    probe = df[: args.probe]
    marks = [s for s in (1, 2, 4, 8, 16, 32, 64) if s <= args.steps]

    table = Table(title=f"{run.name} iteration {k}: {df.height} steps, clip_coef {cfg.clip_coef}")
    table.add_column("lr", justify="right")
    for s in marks:
        table.add_column(f"after {s}: KL / clipped", justify="right")
    for lr in args.lr:
        torch.manual_seed(0)
        policy = load_policy(ckpt_dir(run, k))
        if not cfg.train_vision:
            policy.freeze_vision()
        optimizer = make_optimizer(policy, cfg, lr)
        if (ckpt_dir(run, k) / OPTIMIZER_FILE).exists():
            load_optimizer(policy, optimizer, ckpt_dir(run, k) / OPTIMIZER_FILE)
            set_lr(optimizer, cfg, lr)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        targets = targets_of(df, cfg, policy.device)
        # update's mini-batches: one shuffle per epoch from update's seed, epochs chained
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + k)
        minibatches = [
            perm[i : i + cfg.minibatch_size]
            for _ in range(math.ceil(args.steps * cfg.grad_accum * cfg.minibatch_size / df.height))
            for perm in [torch.randperm(df.height, generator=gen)]
            for i in range(0, df.height, cfg.minibatch_size)
        ]
        cells, m = [], 0
        policy.model.train()
        for s in range(1, args.steps + 1):
            for _ in range(cfg.grad_accum):
                idx, m = minibatches[m], m + 1
                minibatch_backward(policy, df[idx.tolist()], idx, targets, cfg, cfg.grad_accum, where="bench")
            optimizer_step(policy, params, optimizer, cfg, epoch=0)
            if s in marks:
                with torch.no_grad():
                    new = torch.cat(
                        [
                            minibatch_outputs(policy, probe[i : i + cfg.minibatch_size], cfg)[
                                "action_logprobs"
                            ]
                            for i in range(0, probe.height, cfg.minibatch_size)
                        ]
                    )
                # update's own diagnostics (the advantages do not enter them)
                _, st = policy_loss(
                    new, targets.old_logprob[: probe.height], torch.zeros_like(new), cfg.clip_coef
                )
                cells.append(f"{st['approx_kl']:.3g} / {st['clipfrac']:.0%}")
        table.add_row(f"{lr:g}", *cells)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
