"""Shared fixtures: models made by `init-model` once per test session."""

import os
from pathlib import Path

import pytest

# Set before torch is imported: the tiny models' ops are too small for threads to pay, and on a
# loaded 2-core machine OpenMP threads waiting on each other made generation 3x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub

# a run.toml at toy scale (NumberLine, 64 px images, a few episodes, a few tokens): tests that run
# the CLI over a run directory add their own lines (policy, tracker, ...)
TOY_RUN_TOML = """env = "numberline"
image_size = 64
episodes = 4
episodes_per_shard = 2
num_envs = 2
max_new_tokens = 16
temperature = 1.0
update_epochs = 1
minibatch_size = 4
grad_accum = 1
learning_rate = 1e-3
max_grad_norm = 1.0
eval_episodes = 4
demo_random_frac = 0.25
sft_steps = 3
sft_batch_size = 4
sft_save_every = 2
sft_warmup = 1
train_vision = false
"""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random LLaVA checkpoint built by init_model (seed 0, 112 px images)."""
    from vlmagent.policy.tiny import init_model

    return init_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2-VL model (plain HF dir, no value head) for the Qwen family adapter."""
    from vlmagent.policy.tiny import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("models") / "qwen2vl")
