"""Fused vs naive response-token log-prob: peak extra memory and forward+backward time.

Each variant runs in a fresh subprocess. Memory is the process's peak RSS (VmHWM, reset once the
inputs exist; ru_maxrss where the peak cannot be reset) above a baseline taken while it held everything
both variants must hold anyway: the inputs (hidden, LM head weight, targets, upstream grad) and buffers
the size of their gradients. Time is the best of --repeats forward+backward passes (the first one
included) over --rounds subprocesses per variant. Run with the machine otherwise quiet:

    .venv/bin/python bench/logprob.py --rounds 2         # the issue's grid (about 15-20 min a round, 2 cores)
    .venv/bin/python bench/logprob.py --tokens 512 --hidden 256 --vocab 32000 --repeats 2   # smoke
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def _status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mib(resettable: bool) -> float:
    if resettable:
        return _status_mib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(impl: str, n: int, h: int, v: int, head: str, dtype: str, temperature: float, repeats: int) -> dict:
    import torch

    from vlmagent.policy.logprob import naive_token_logprobs, token_logprobs

    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    # filled in place: a temporary the size of the weight would raise the peak before we measure
    hidden = torch.empty(n, h, dtype=dt).normal_(std=0.5).requires_grad_()
    weight = torch.empty(v, h, dtype=dt).normal_(std=h**-0.5).requires_grad_(head == "trained")
    targets = torch.randint(0, v, (n,))
    g = torch.randn(n)
    # baseline: inputs plus buffers the size of their gradients, all held at once
    held = [torch.ones_like(hidden)] + ([torch.ones_like(weight)] if head == "trained" else [])
    resettable = _reset_peak()
    base = _status_mib("VmRSS") if resettable else _peak_mib(False)
    del held
    _reset_peak()
    fn = token_logprobs if impl == "fused" else naive_token_logprobs
    times = []
    for _ in range(repeats):
        hidden.grad = weight.grad = None
        t0 = time.perf_counter()
        logp = fn(hidden, weight, targets, temperature)
        (logp * g).sum().backward()
        times.append(time.perf_counter() - t0)
        del logp
    return {"extra_mib": _peak_mib(resettable) - base, "time_s": min(times), "times": times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4096, help="response tokens per batch")
    ap.add_argument("--hidden", type=int, nargs="+", default=[1024, 2048], help="hidden sizes")
    ap.add_argument("--vocab", type=int, nargs="+", default=[32000, 152064], help="vocab sizes")
    ap.add_argument(
        "--heads", nargs="+", default=["frozen", "trained"], help="LM head frozen (LoRA) / trained"
    )
    ap.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    ap.add_argument("--temperature", type=float, default=0.2, help="sampling temperature of the log-probs")
    ap.add_argument("--repeats", type=int, default=3, help="forward+backward passes per variant (best kept)")
    ap.add_argument("--rounds", type=int, default=1, help="fresh subprocesses per variant, alternating")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:  # one variant, in this fresh process
        print(json.dumps(child(**json.loads(args.child))))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    rows = []
    for h in args.hidden:
        for v in args.vocab:
            for head in args.heads:
                row = {"hidden": h, "vocab": v, "head": head}
                # rounds alternate naive and fused, so that load from other processes hits both alike
                for _ in range(args.rounds):
                    for impl in ("naive", "fused"):
                        spec = dict(impl=impl, n=args.tokens, h=h, v=v, head=head, dtype=args.dtype)
                        spec.update(temperature=args.temperature, repeats=args.repeats)
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", json.dumps(spec)],
                            capture_output=True,
                            text=True,
                            check=True,
                        )
                        res = json.loads(out.stdout.strip().splitlines()[-1])
                        console.log(f"H={h} V={v} {head} {impl}: {res}")
                        if impl in row:  # keep the best time and the largest memory seen
                            res["time_s"] = min(res["time_s"], row[impl]["time_s"])
                            res["extra_mib"] = max(res["extra_mib"], row[impl]["extra_mib"])
                            res["times"] = row[impl]["times"] + res["times"]
                        row[impl] = res
                rows.append(row)

    table = Table(title=f"fused vs naive log-prob, {args.tokens} tokens, {args.dtype}, T={args.temperature}")
    for col in (
        "hidden",
        "vocab",
        "head",
        "naive MiB",
        "fused MiB",
        "mem ratio",
        "naive s",
        "fused s",
        "time ratio",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        nm, fm = r["naive"]["extra_mib"], r["fused"]["extra_mib"]
        nt, ft = r["naive"]["time_s"], r["fused"]["time_s"]
        table.add_row(
            str(r["hidden"]),
            str(r["vocab"]),
            r["head"],
            f"{nm:.0f}",
            f"{fm:.0f}",
            f"1/{nm / max(fm, 1):.1f}",
            f"{nt:.2f}",
            f"{ft:.2f}",
            f"{ft / nt:.2f}x",
        )
    console.print(table)
    console.print("targets: memory ratio <= 1/8 at vocab 152,064; time <= 1.1x frozen, <= 1.4x trained")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
