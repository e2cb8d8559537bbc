"""Env steps per second (step, which renders the observation) for the four gym_cards envs.

    python bench/envs.py [--steps 2000] [--image-size 300]

The oracle picks the actions (its time is not counted), so episodes look like real ones.
"""

import argparse
import time

from rich.console import Console
from rich.table import Table

from vlmagent.envs import ENV_IDS, make_env


def bench(name: str, steps: int, image_size: int) -> dict[str, float]:
    env = make_env(name, image_size=image_size)
    env.reset(seed=0)
    elapsed, episodes = 0.0, 0
    for _ in range(steps):
        action = env.unwrapped.oracle_action()
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        elapsed += time.perf_counter() - start
        if terminated or truncated:
            episodes += 1
            start = time.perf_counter()
            env.reset(seed=episodes)  # a new deal: the per-episode image cache is rebuilt
            elapsed += time.perf_counter() - start
    return {"steps": steps, "episodes": episodes, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="env steps per env")
    parser.add_argument("--image-size", type=int, default=300, help="observation side in pixels")
    args = parser.parse_args()
    table = Table(title=f"env steps/s (step + render, resets included), {args.image_size}x{args.image_size}")
    for column in ("env", "steps", "episodes", "steps/s", "ms/step"):
        table.add_column(column, justify="left" if column == "env" else "right")
    for name in ENV_IDS:
        r = bench(name, args.steps, args.image_size)
        rate = r["steps"] / r["seconds"]
        table.add_row(name, str(r["steps"]), str(r["episodes"]), f"{rate:,.0f}", f"{1000 / rate:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
