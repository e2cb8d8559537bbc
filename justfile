# vlmagent recipes. `just --list` shows them.
py := ".venv/bin/python"

# create the virtual environment (torch CPU build first, then the project with dev tools)
setup:
    test -x .venv/bin/python || python3 -m venv .venv
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e '.[dev]'

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
