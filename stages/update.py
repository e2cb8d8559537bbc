"""update: PPO epochs over the scored steps; writes the next checkpoint atomically.

The schedule position (how many updates came before) and Adam's state travel in the checkpoint, so
the cosine schedule and the optimizer continue across iterations and across processes. A killed
update leaves no checkpoint behind; rerun, it starts again from the parent and gives the same result.

Under torchrun the batch sizes stay global: every rank draws the same order of all the steps and takes
every world-th step of each mini-batch, so `minibatch_size` and `grad_accum` mean the same on any number
of ranks and the world size changes speed, not the update. A full fine-tune is sharded with FSDP2
(`fully_shard`): each of the model's no-split blocks (decoder and vision layers) and the rest of the
backbone; the LM head, which the fused log-prob reads whole, and the value head stay replicated with
their gradients averaged. LoRA (small adapters on a frozen base) replicates the model and averages the
adapters' gradients. Checkpoint and optimizer state are saved whole, so any world size resumes them.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
import torch.distributed as dist
from rich.progress import Progress

from vlmagent.config import (
    Config,
    config_dict,
    config_hash,
    has_critic,
    stage_config,
    zero_advantage_has_no_gradient,
)
from vlmagent.policy.checkpoint import save_checkpoint
from vlmagent.policy.forward import evaluate_actions, forward_hidden
from vlmagent.policy.load import Policy, default_device, load_policy, model_inputs_for
from vlmagent.policy.lora import is_lora, unwrap
from vlmagent.ppo import (
    cosine_schedule,
    explained_variance,
    normalize_advantages,
    ppo_loss,
)
from vlmagent.rundir import ckpt_dir, latest_ckpt, scored_dir, update_json
from vlmagent.shards import (
    MANIFEST,
    SCORED_SCHEMA,
    ShardError,
    atomic_write,
    policy_inputs,
    read_json,
    read_manifest,
    read_stage,
    sha256_file,
    stage_done,
)

OPTIMIZER_FILE = "optimizer.pt"
REPORT_FILE = "update.json"


# |advantage| at or below this is zero: a uniform group's float32 advantages, up to rounding
ZERO_ADVANTAGE = 1e-6
STAT_KEYS = ("pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac")


class UpdateError(RuntimeError):
    """The update cannot go on (a NaN loss...); the previous checkpoint stays the latest."""


def scheduled_lr(cfg: Config, update_index: int) -> float:
    """The paper's cosine schedule over `total_updates` updates, one value per update."""
    return cosine_schedule(update_index, cfg.total_updates, cfg.learning_rate, cfg.min_learning_rate)


def make_optimizer(policy: Policy, cfg: Config, lr: float) -> torch.optim.Adam:
    """Adam over what update trains: the policy's trainable parameters, then the value head's."""
    groups = [
        {"params": [p for p in policy.model.parameters() if p.requires_grad]},
        {"params": list(policy.value_head.parameters())},
    ]
    optimizer = torch.optim.Adam(groups, lr=lr, eps=cfg.adam_eps)
    set_lr(optimizer, cfg, lr)
    return optimizer


def set_lr(optimizer: torch.optim.Optimizer, cfg: Config, lr: float) -> None:
    """The scheduled lr for the policy group; the value head's scaled by value_learning_rate / learning_rate."""
    value_scale = cfg.value_learning_rate / cfg.learning_rate if cfg.value_learning_rate > 0 else 1.0
    for group, scale in zip(optimizer.param_groups, (1.0, value_scale), strict=True):
        group["lr"] = lr * scale


def minibatch_outputs(policy: Policy, b: pl.DataFrame, cfg: Config) -> dict[str, torch.Tensor]:
    """The policy's values and action log-probs (and token entropies when ent_coef != 0) on rows `b`."""
    hidden = forward_hidden(
        policy,
        b["prompt_token_ids"].to_list(),
        b["response_token_ids"].to_list(),
        model_inputs_for(policy, b["image"].to_list()),
    )
    return evaluate_actions(
        policy,
        hidden,
        b["action_token_start"].to_list(),
        cfg.temperature,
        cfg.cot_lambda,
        with_entropy=cfg.ent_coef != 0,
    )


def world() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> None:
    """Join the torchrun process group (gloo on CPU, nccl on GPU) when launched under torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def check_world_size(cfg: Config) -> None:
    """The global mini-batch splits evenly over the ranks (equal work between their collectives)."""
    n_ranks = world()[1]
    if cfg.minibatch_size % n_ranks:
        raise ValueError(
            f"minibatch_size = {cfg.minibatch_size} does not divide by the {n_ranks} torchrun ranks"
            f" (the mini-batch is global; each rank takes 1/{n_ranks} of it): use a multiple of {n_ranks}"
        )


def shard_model(policy: Policy) -> bool:
    """FSDP2 over the torchrun ranks for a full fine-tune; True when the model is now sharded."""
    if world()[1] == 1 or is_lora(policy.model):
        return False
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(policy.device.type, (world()[1],))
    blocks = set(getattr(unwrap(policy.model), "_no_split_modules", None) or ())
    backbone = policy.family.backbone(policy.model)
    for module in list(backbone.modules())[1:]:
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    # the LM head stays whole for the fused log-prob (an input embedding tied to it too)
    fully_shard(backbone, mesh=mesh, ignored_params={policy.lm_head.weight})
    return True


def is_sharded(p: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(p, DTensor)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Data parallelism for the replicated parameters: every rank steps with the mean gradient, so the
    replicas stay identical (FSDP has already reduce-scattered the sharded ones' mean)."""
    if world()[1] == 1:
        return
    for p in params:
        if is_sharded(p):
            continue
        if p.grad is None:  # no gradient reached it on this rank: it still takes part in the reduction
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad.div_(world()[1])


def clip_gradients(params: list[torch.nn.Parameter], max_norm: float) -> float:
    """clip_grad_norm_ over sharded and replicated gradients together; the norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    sharded = [g for g in grads if is_sharded(g)]
    norm = torch.nn.utils.get_total_norm([g for g in grads if not is_sharded(g)]) ** 2
    if sharded:
        norm = norm + torch.nn.utils.get_total_norm(sharded).full_tensor() ** 2
    total = float(norm.sqrt())
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g.mul_(coef)
    return total


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    if world()[1] > 1:
        dist.all_reduce(t)
    return t


def minibatch_stats(st: dict[str, float], n_rank: int, n_batch: int) -> dict[str, float]:
    """The mini-batch's stats over all ranks' rows: each rank's means weighted by its share of the rows."""
    if world()[1] == 1:
        return st
    t = sum_over_ranks(torch.tensor([st[k] * n_rank for k in STAT_KEYS], dtype=torch.float64))
    return dict(zip(STAT_KEYS, (t / n_batch).tolist(), strict=True))


def training_state(policy: Policy) -> torch.nn.Module:
    """What update trains, as one module: the names its (and the optimizer's) state dicts use."""
    return torch.nn.ModuleDict({"model": policy.model, "value_head": policy.value_head})


def full_state(policy: Policy, optimizer: torch.optim.Optimizer, sharded: bool) -> tuple[dict | None, dict]:
    """(model state dict, optimizer state dict), whole, on CPU: every rank calls it, rank 0 saves them.
    The model's is None when unsharded (save_pretrained reads the model itself)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(policy.model, options=options) if sharded else None
    return model_state, get_optimizer_state_dict(training_state(policy), optimizer, options=options)


def load_optimizer(policy: Policy, optimizer: torch.optim.Optimizer, path: Path) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    state = torch.load(path, weights_only=True)
    if len(state["param_groups"]) != len(optimizer.param_groups):
        # written before the state was keyed by name and the value head had its own group
        warnings.warn(f"{path}: Adam state in an older format; this update starts Adam afresh", stacklevel=2)
        return
    # not strict: a parameter that never had a gradient (CLIP's unused last layer norm) has no state
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_optimizer_state_dict(training_state(policy), optimizer, state, options=options)


@dataclass
class Targets:
    """What the scorer fixed for each of this rank's steps: PPO's targets, on the policy's device."""

    advantages: torch.Tensor  # normalised when cfg.norm_adv
    old_logprob: torch.Tensor
    old_value: torch.Tensor
    returns: torch.Tensor


def targets_of(df: pl.DataFrame, cfg: Config, device: torch.device) -> Targets:
    advantages = torch.tensor(df["advantage"].to_list(), dtype=torch.float32)
    if cfg.norm_adv:
        advantages = normalize_advantages(advantages)  # once per update, over all its steps
    column = lambda name: torch.tensor(df[name].to_list(), dtype=torch.float32, device=device)  # noqa: E731
    return Targets(advantages.to(device), column("old_logprob"), column("value"), column("return"))


def minibatch_backward(
    policy: Policy,
    b: pl.DataFrame,
    idx: torch.Tensor,
    targets: Targets,
    cfg: Config,
    scale: float,
    where: str,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """`ppo_loss` on rows `b` (this rank's steps `idx`), backward with weight `scale`; outputs and stats."""
    out = minibatch_outputs(policy, b, cfg)
    loss, stats = ppo_loss(
        out["action_logprobs"].float(),
        targets.old_logprob[idx],
        targets.advantages[idx],
        out["values"].float(),
        targets.old_value[idx],
        targets.returns[idx],
        out["entropy"].float() if "entropy" in out else None,
        clip_coef=cfg.clip_coef,
        clip_vloss=cfg.clip_vloss,
        vf_coef=cfg.vf_coef if has_critic(cfg) else 0.0,  # grpo, gigpo: the value head is not trained
        ent_coef=cfg.ent_coef,
    )
    if not torch.isfinite(loss):
        raise UpdateError(
            f"non-finite loss {loss.item()} at {where} "
            f"(episodes {sorted(set(b['episode_id'].to_list()))}); no checkpoint written"
        )
    loss.div(scale).backward()
    return out, stats


def zero_weight_backward(policy: Policy, pad: pl.DataFrame, cfg: Config) -> None:
    """A pass that changes no gradient: a rank whose slice is shorter still joins the others' collectives."""
    out = minibatch_outputs(policy, pad, cfg)
    (0.0 * (out["action_logprobs"].sum() + out["values"].sum())).backward()


def ppo_epochs(
    policy: Policy, df: pl.DataFrame, cfg: Config, optimizer: torch.optim.Optimizer, seed: int
) -> dict:
    """The PPO update proper: epochs of shuffled mini-batches, gradient accumulation, clipping.

    Under torchrun every rank draws the same permutation and takes every world-th step of each
    mini-batch; its loss is weighted by its share of the mini-batch, so the gradients the ranks average
    are the one-process gradient. A rank whose share is empty (a short last mini-batch) runs an empty pass.
    """
    rank, n_ranks = world()
    targets = targets_of(df, cfg, policy.device)
    gen = torch.Generator().manual_seed(seed)  # the same order on every rank
    n_mb = math.ceil(df.height / cfg.minibatch_size)
    log: dict[str, list[float]] = {k: [] for k in (*STAT_KEYS, "grad_norm", "tokens")}
    new_values = torch.zeros(df.height)
    t0 = time.perf_counter()
    policy.model.train()
    with Progress(transient=True) as progress:
        task = progress.add_task("update", total=cfg.update_epochs * n_mb)
        for epoch in range(cfg.update_epochs):
            perm = torch.randperm(df.height, generator=gen)
            minibatches = [perm[m * cfg.minibatch_size : (m + 1) * cfg.minibatch_size] for m in range(n_mb)]
            epoch_kl = ppo_epoch(
                policy, optimizer, cfg, epoch, df, targets, minibatches, log, new_values,
                advance=lambda: progress.advance(task),
            )  # fmt: skip
            # the same on every rank (global stats): all stop at the same epoch, none waits forever
            if cfg.target_kl > 0 and epoch_kl > cfg.target_kl:
                break
    policy.model.eval()
    sum_over_ranks(new_values)  # each step's value came from the one rank that held it
    return update_stats(log, epoch + 1, new_values, targets, cfg, time.perf_counter() - t0)


def ppo_epoch(
    policy: Policy,
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    epoch: int,
    df: pl.DataFrame,
    targets: Targets,
    minibatches: list[torch.Tensor],
    log: dict[str, list[float]],
    new_values: torch.Tensor,
    advance: Callable[[], None],
) -> float:
    """One pass over all the steps `df` in `minibatches` (global row indices; this rank takes every
    world-th of each, and one with no share runs an empty pass), an optimizer step after every
    `grad_accum` of them. Appends each mini-batch's stats over all ranks and each step's gradient norm
    to `log`, writes the first epoch's values into `new_values`; returns the epoch's mean approx KL."""
    rank, n_ranks = world()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    n_mb = len(minibatches)
    epoch_kl = []
    for m, batch in enumerate(minibatches):
        idx = batch[rank::n_ranks]
        group_start = (m // cfg.grad_accum) * cfg.grad_accum
        step_now = (m + 1) % cfg.grad_accum == 0 or m == n_mb - 1
        if len(idx) == 0:
            zero_weight_backward(policy, df[:1], cfg)
            st, tokens = dict.fromkeys(STAT_KEYS, 0.0), 0
        else:
            b = df[idx.tolist()]
            # the mean over the accumulation group (whose last one may be short) of the mean over the
            # mini-batch, of which this rank holds len(idx) / len(batch)
            scale = min(cfg.grad_accum, n_mb - group_start) * (len(batch) / (len(idx) * n_ranks))
            out, st = minibatch_backward(
                policy, b, idx, targets, cfg, scale, where=f"epoch {epoch}, mini-batch {m}"
            )
            if epoch == 0:
                new_values[idx] = out["values"].detach().float().cpu()
            tokens = sum(len(r) for r in b["response_token_ids"].to_list())
        if step_now:
            log["grad_norm"].append(optimizer_step(policy, params, optimizer, cfg, epoch))
        st = minibatch_stats(st, len(idx), len(batch))
        for k in STAT_KEYS:
            log[k].append(st[k])
        epoch_kl.append(st["approx_kl"])
        log["tokens"].append(tokens)
        advance()
    return sum(epoch_kl) / max(len(epoch_kl), 1)


def update_stats(
    log: dict[str, list[float]],
    epochs: int,
    new_values: torch.Tensor,
    targets: Targets,
    cfg: Config,
    seconds: float,
) -> dict[str, Any]:
    """update.json's numbers: the mean of each loss stat over mini-batches, of the gradient norm over
    optimizer steps, and the first epoch's values against the returns; tokens/s over all ranks."""
    grad_norms = log["grad_norm"]
    tokens = sum_over_ranks(torch.tensor([sum(log["tokens"])], dtype=torch.float64)).item()
    return {
        **{k: sum(log[k]) / max(len(log[k]), 1) for k in STAT_KEYS},
        "epochs": epochs,
        "steps": len(new_values),
        "optimizer_steps": len(grad_norms),
        "grad_norm": sum(grad_norms) / max(len(grad_norms), 1),
        "explained_variance": (
            explained_variance(new_values, targets.returns.cpu()) if has_critic(cfg) else float("nan")
        ),
        "tokens_per_s": tokens / seconds,
        "seconds": seconds,
    }


def stage_inputs(cfg: Config, scored: Path, policy_path: str | Path) -> dict[str, Any]:
    """What defines the checkpoint an update writes: the scored steps (their MANIFEST's hash), the policy
    it starts from, the PPO config. Recorded in its vlmagent.json."""
    if read_manifest(scored) is None:
        raise ShardError(f"{scored}: no {MANIFEST} (score has not finished)")
    return {
        "stage": "update",
        "scored_manifest_sha256": sha256_file(Path(scored) / MANIFEST),
        **policy_inputs(str(policy_path)),
        **stage_config(cfg, "update"),
    }


def resolve(
    run: Path | None, scored: Path | None, policy: Path | None, out: Path | None
) -> tuple[Path, Path, Path, Path | None]:
    """`vlmagent update`'s inputs, output and report: from the run's newest checkpoint k, iter/k/scored to
    ckpt/k+1 with iter/k/update.json, each path unless given (no report without --run)."""
    report = None
    if run is not None:
        k = latest_ckpt(run) or 0
        scored, policy = scored or scored_dir(run, k), policy or ckpt_dir(run, k)
        out, report = out or ckpt_dir(run, k + 1), update_json(run, k)
    if scored is None or out is None or policy is None:
        raise ValueError("give --run, or all of --scored, --policy and --out")
    return scored, policy, out, report


def run(
    cfg: Config,
    scored: Path,
    policy_path: str | Path,
    out: Path,
    report: Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """One PPO update from `policy_path` on the steps in `scored`, saved to `out`; returns its stats.

    A no-op when `out` is this update's checkpoint; an error (before any training) when `out` is the
    policy itself or a checkpoint made from other inputs, unless `overwrite` (then replaced when the new
    one is whole). `report` (the run's iter/k/update.json) gets a copy of the stats.
    """
    out = Path(out)
    if Path(policy_path).exists() and out.exists() and out.resolve() == Path(policy_path).resolve():
        raise ValueError(f"--out {out}: the policy the update starts from; give another --out")
    inputs = stage_inputs(cfg, scored, policy_path)
    done = stage_done(out, inputs, overwrite)
    if not done and out.exists() and not overwrite:  # found now, not after the training
        raise ShardError(f"{out}: exists and is not a checkpoint; give another --out, or --overwrite")
    if not done:
        init_distributed()
        check_world_size(cfg)
        _update(cfg, scored, policy_path, out, inputs, overwrite)
        if world()[1] > 1:
            dist.barrier()  # no rank returns before rank 0's checkpoint is in place
    if report is not None and (not done or not Path(report).exists()):  # the stats travel in the ckpt
        atomic_write(report, (out / REPORT_FILE).read_bytes())
    return read_json(out / REPORT_FILE)


def optimizer_step(
    policy: Policy,
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    epoch: int,
) -> float:
    average_gradients(params)
    grad_norm = clip_gradients(params, cfg.max_grad_norm)
    if not math.isfinite(grad_norm):
        raise UpdateError(f"non-finite gradient norm at epoch {epoch}; no checkpoint written")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def _update(
    cfg: Config, scored: Path, policy_path: str | Path, out: Path, inputs: dict[str, Any], overwrite: bool
) -> None:
    policy = load_policy(policy_path, device=default_device())
    df = read_stage(scored, SCORED_SCHEMA, policy.vocab_size)
    if df.height == 0:
        raise ShardError(f"{scored}: no steps to train on (its MANIFEST lists 0 rows)")
    trained = df.filter(pl.col("advantage").abs() > ZERO_ADVANTAGE)
    # with no critic and no entropy bonus, an update whose advantages are all zero has a zero gradient,
    # yet Adam's moments from the last update would still move every weight: it trains on nothing
    no_signal = trained.height == 0 and zero_advantage_has_no_gradient(cfg)
    skipped = 0
    if cfg.skip_zero_advantage or no_signal:
        df, skipped = trained, df.height - trained.height
    if not cfg.train_vision:
        # also keeps Adam's first steps (about lr per weight whatever the gradient) off a frozen tower
        policy.freeze_vision()
    sharded = shard_model(policy)
    update_index = int(policy.meta.get("update_index", 0))
    lr = scheduled_lr(cfg, update_index)
    optimizer = make_optimizer(policy, cfg, lr)
    opt_file = Path(policy_path) / OPTIMIZER_FILE
    if opt_file.exists():
        load_optimizer(policy, optimizer, opt_file)
        set_lr(optimizer, cfg, lr)  # this update's, not the saved ones
    stats = ppo_epochs(policy, df, cfg, optimizer, seed=cfg.seed * 1_000_003 + update_index)
    stats.update(learning_rate=lr, update_index=update_index, parent=str(policy_path), scored=str(scored))
    stats.update(skipped_steps=skipped)
    stats.update(ranks=world()[1], sharding="fsdp" if sharded else "replicated")
    meta = {
        "parent": str(policy_path),
        "update_index": update_index + 1,
        "config_hash": config_hash(cfg),
        "source": policy.meta.get("source", str(policy_path)),  # where the run's first policy came from
        "inputs": inputs,
    }
    model_state, optimizer_state = full_state(policy, optimizer, sharded)
    if world()[0] != 0:  # one writer
        return
    save_checkpoint(
        out,
        policy,
        meta,
        state_dict=model_state,
        extra_files={
            OPTIMIZER_FILE: lambda p: torch.save(optimizer_state, p),
            REPORT_FILE: lambda p: p.write_text(json.dumps({**stats, "config": config_dict(cfg)}, indent=2)),
        },
        overwrite=overwrite,
    )
