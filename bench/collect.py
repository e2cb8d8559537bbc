"""collect throughput: the hf backend batched (one generate per step over N envs) against one env at a
time (the reference's way), and vllm where it can run, on the same seeds and model; plus the
sampler-vs-trainer log-prob gap that `score` reports for each.

    python bench/collect.py [--env blackjack] [--episodes 32] [--num-envs 16] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stages import collect, score
from vlmagent.config import Config
from vlmagent.policy.load import load_policy
from vlmagent.policy.tiny import init_model
from vlmagent.rollout.hf import HFBackend
from vlmagent.shards import read_stage


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="blackjack")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--model", default="", help="model dir (default: a fresh tiny model)")
    args = ap.parse_args()
    results: dict[str, dict[str, float] | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(init_model(tmp / "model"))
        policy = load_policy(model)
        base = dict(env=args.env, episodes=args.episodes, max_new_tokens=args.max_new_tokens, temperature=1.0)
        batched = Config(**base, num_envs=args.num_envs, episodes_per_shard=args.episodes)
        single = Config(**base, num_envs=1, episodes_per_shard=args.episodes)
        hf = HFBackend(policy)
        results[f"hf, {args.num_envs} envs batched"] = measure(
            batched, hf, policy.processor, policy, tmp / "b"
        )
        results["hf, one env at a time"] = measure(single, hf, policy.processor, policy, tmp / "s")
        try:
            from vlmagent.rollout.vllm import VLLMBackend, vllm_platform

            if vllm_platform() in (None, "cpu"):
                raise RuntimeError(f"vllm platform {vllm_platform()}: our LLaVA models need a GPU in vllm")
            vllm = VLLMBackend(model)
            results[f"vllm, {args.num_envs} envs"] = measure(batched, vllm, vllm.processor, policy, tmp / "v")
        except (ImportError, RuntimeError) as e:
            results["vllm"] = f"not run: {e}"
    ref = results["hf, one env at a time"]
    assert isinstance(ref, dict)
    table = Table(title=f"collect {args.episodes} {args.env} episodes, max {args.max_new_tokens} new tokens")
    for col in ("backend", "episodes/s", "tokens/s", "x one-at-a-time", "gap mean", "gap max"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        if isinstance(r, str):
            table.add_row(name, r, "", "", "", "")
            continue
        table.add_row(
            name,
            f"{r['episodes/s']:.2f}",
            f"{r['tokens/s']:.0f}",
            f"{r['episodes/s'] / ref['episodes/s']:.1f}x",
            f"{r['gap mean']:.1e}",
            f"{r['gap max']:.1e}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
