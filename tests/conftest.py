"""Shared fixtures: models made by `init-model` once per test session."""

import os
from pathlib import Path

import pytest

# Set before torch is imported: the tiny models' ops are too small for threads to pay, and on a
# loaded 2-core machine OpenMP threads waiting on each other made generation 3x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub


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
