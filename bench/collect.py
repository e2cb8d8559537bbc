"""collect throughput: the hf backend batched (one generate per step over N envs) against one env at a
time (the reference's way), and vllm where it can run, on the same seeds and model; plus the
sampler-vs-trainer log-prob gap that `score` reports for each.

A second table says where the hf backend's time goes, from generate calls on the envs' first prompts:
the prefill (the prompt's forward, timed as a call that makes one token) per row, and each decode
step. Batching divides the decode step's cost among the rows; the prefill's it cannot, since on a CPU
that forward is compute-bound, so its share of the batched call bounds the speed-up.

    python bench/collect.py [--env blackjack] [--episodes 32] [--num-envs 16] [--max-new-tokens 64]
        [--temperature 1.0] [--model DIR] [--repeats 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vlmagent import prompts
from vlmagent.config import Config
from vlmagent.envs import make_env
from vlmagent.policy.load import Policy, load_policy
from vlmagent.policy.tiny import init_model
from vlmagent.rollout import Request
from vlmagent.rollout.hf import HFBackend
from vlmagent.shards import read_stage
from vlmagent.stages import collect, score


def measure(cfg: Config, backend, processor, policy, out: Path) -> dict[str, float]:
    t = time.perf_counter()
    collect.run(cfg, out, collect.model_actor(cfg, backend, processor), "bench")
    dt = time.perf_counter() - t
    df = read_stage(out)
    manifest = score.run(cfg, out, policy, out.parent / f"{out.name}-scored")
    return {
        "episodes/s": df["episode_id"].n_unique() / dt,
        "tokens/s": df["response_token_ids"].list.len().sum() / dt,
        "seconds": dt,
        "gap mean": manifest["logprob_gap_mean"],
        "gap max": manifest["logprob_gap_max"],
    }


def first_prompts(cfg: Config, policy: Policy, n: int) -> list[Request]:
    """The first prompt of n episodes, built as collect builds them."""
    env = make_env(cfg.env, **collect.env_kwargs(cfg))
    requests = []
    for seed in range(n):
        obs = env.reset(seed=seed)[0]
        text = prompts.build_prompt(cfg.env, cfg.cot, env.unwrapped.state_text())
        requests.append(collect.model_request(policy.processor, obs, text))
    env.close()
    return requests


def time_generate(
    hf: HFBackend, requests: list[Request], cfg: Config, max_new_tokens: int
) -> tuple[float, int]:
    """Best of 3 wall times of one generate call, and the steps it ran (its longest response)."""
    best, steps = float("inf"), 0
    for seed in range(3):
        t = time.perf_counter()
        gens = hf.generate(requests, cfg.temperature, max_new_tokens, seed)
        dt = time.perf_counter() - t
        if dt < best:
            best, steps = dt, max(len(g.response_token_ids) for g in gens)
    return best, steps


def breakdown(hf: HFBackend, policy: Policy, cfg: Config, num_envs: int) -> dict[int, dict[str, float]]:
    """Per batch size: prefill per row, decode per step and per generated row-token, in ms."""
    requests = first_prompts(cfg, policy, num_envs)
    out = {}
    for batch in (1, num_envs):
        prefill, _ = time_generate(hf, requests[:batch], cfg, 1)
        full, steps = time_generate(hf, requests[:batch], cfg, cfg.max_new_tokens)
        step = (full - prefill) / max(steps - 1, 1)
        out[batch] = {
            "prefill ms/row": 1e3 * prefill / batch,
            "decode ms/step": 1e3 * step,
            "decode ms/row-token": 1e3 * step / batch,
            "prefill share": prefill / full,
            "call ms/row": 1e3 * full / batch,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="blackjack")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--model", default="", help="model dir (default: a fresh tiny model)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each hf arm; the table shows the fastest")
    args = ap.parse_args()
    results: dict[str, dict[str, float] | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(init_model(tmp / "model"))
        policy = load_policy(model)
        base = dict(
            env=args.env,
            episodes=args.episodes,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
        )
        batched = Config(**base, num_envs=args.num_envs, episodes_per_shard=args.episodes)
        single = Config(**base, num_envs=1, episodes_per_shard=args.episodes)
        hf = HFBackend(policy)
        arms = {f"hf, {args.num_envs} envs batched": batched, "hf, one env at a time": single}
        for r in range(args.repeats):  # the arms take turns, so a slow spell of the machine hits both
            for i, (name, cfg) in enumerate(arms.items()):
                m = measure(cfg, hf, policy.processor, policy, tmp / f"hf{i}-{r}")
                best = results.get(name)
                if not isinstance(best, dict) or m["episodes/s"] > best["episodes/s"]:
                    results[name] = m
        try:
            from vlmagent.rollout.vllm import VLLMBackend, vllm_platform

            if vllm_platform() in (None, "cpu"):
                raise RuntimeError(f"vllm platform {vllm_platform()}: our LLaVA models need a GPU in vllm")
            vllm = VLLMBackend(model)
            try:
                results[f"vllm, {args.num_envs} envs"] = measure(
                    batched, vllm, vllm.processor, policy, tmp / "v"
                )
            finally:
                vllm.close()
        except (ImportError, RuntimeError) as e:
            results["vllm"] = f"not run: {e}"
    ref = results["hf, one env at a time"]
    assert isinstance(ref, dict)
    table = Table(title=f"collect {args.episodes} {args.env} episodes, max {args.max_new_tokens} new tokens")
    for col in ("backend", "episodes/s", "tokens/s", "x one-at-a-time", "gap mean", "gap max"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        if isinstance(r, str):
            continue
        table.add_row(
            name,
            f"{r['episodes/s']:.2f}",
            f"{r['tokens/s']:.0f}",
            f"{r['episodes/s'] / ref['episodes/s']:.1f}x",
            f"{r['gap mean']:.1e}",
            f"{r['gap max']:.1e}",
        )
    console = Console()
    console.print(table)
    for name, r in results.items():
        if isinstance(r, str):
            console.print(f"{name}: {r}")
    parts = breakdown(hf, policy, batched, args.num_envs)
    table = Table(title=f"hf generate, {args.num_envs} first prompts, max {args.max_new_tokens} new tokens")
    table.add_column("batch", justify="right")
    for col in parts[1]:
        table.add_column(col, justify="right")
    for batch, r in parts.items():
        table.add_row(str(batch), *(f"{v:.0%}" if "share" in k else f"{v:.1f}" for k, v in r.items()))
    console.print(table)


if __name__ == "__main__":
    main()
