"""`python -m vlmagent ...` (and `torchrun ... -m vlmagent update ...`): the same CLI as `vlmagent`."""

from vlmagent.cli import app

if __name__ == "__main__":
    app(prog_name="vlmagent")
