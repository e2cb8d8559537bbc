# vlmagent recipes. `just --list` shows them.
py := ".venv/bin/python"

# create the virtual environment (torch CPU build first, then the project with dev tools)
setup:
    test -x .venv/bin/python || python3 -m venv .venv
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e '.[dev,lora]'

# the test suite (what CI runs)
test *args:
    .venv/bin/pytest {{args}}

# ruff lint and format check
lint:
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .

# a few oracle episodes of every card env, with a summary table each
demo:
    for e in numberline ezpoints points24 blackjack; do .venv/bin/vlmagent eval --env $e --policy oracle --episodes 32 --out runs/demo/$e; done

# env steps per second
bench-envs:
    {{py}} bench/envs.py

# the README's main job: PPO on NumberLine from the shipped SFT policy, held-out success before and after
quickstart run="runs/quickstart":
    .venv/bin/vlmagent loop --run {{run}} --config data/quickstart/run.toml --iterations 3

# the quick start measured from scratch, once per seed (wall time, success before -> after)
bench-quickstart *seeds:
    {{py}} bench/quickstart.py measure {{ if seeds == "" { "" } else { "--seeds " + seeds } }}

# the RL loop on the tiny model: collect -> score -> update, K times, then eval (resumable)
loop env="numberline" iterations="2" run="":
    .venv/bin/vlmagent loop --env {{env}} --run {{ if run == "" { "runs/" + env } else { run } }} --iterations {{iterations}}

# one stage at a time, on a run directory (what `loop` chains)
iteration run:
    .venv/bin/vlmagent collect --run {{run}}
    .venv/bin/vlmagent score --run {{run}}
    .venv/bin/vlmagent update --run {{run}}

# the PPO update on N processes, FSDP-sharded (gloo on CPU, nccl on GPU)
update-fsdp run nproc="2":
    .venv/bin/torchrun --nproc-per-node {{nproc}} -m -- vlmagent update --run {{run}}

# collect throughput: hf batched vs one env at a time (and vllm on a GPU), log-prob gaps, prefill vs decode
bench-collect *args:
    {{py}} bench/collect.py {{args}}

# one iteration, stage by stage, with Parquet I/O's share
bench-loop:
    {{py}} bench/loop.py

# fused log-prob against the naive one: memory and time
bench-logprob:
    {{py}} bench/logprob.py

# does it learn? one task's recipe end to end (recipes/<task>.toml): SFT, RL, held-out evals, curves
learn task *args:
    {{py}} bench/learn.py {{task}} {{args}}

# the CoT ablation on NumberLine: lambda 1 (from the same SFT checkpoint) and the action-only prompt
learn-ablation:
    {{py}} bench/learn.py numberline --name numberline-lambda1 --set cot_lambda=1.0 --sft-from runs/learn/numberline
    {{py}} bench/learn.py numberline --name numberline-nocot --set cot=false --set max_new_tokens=16

# the results table (markdown) of every bench/learn.py run in docs/results
learn-table:
    {{py}} bench/learn.py --table

# rerun published results from scratch (default: all of docs/results) and fail when one falls short of it
learn-check *names:
    {{py}} bench/learn.py --check {{names}}
