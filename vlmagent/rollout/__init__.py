"""Generation backends behind one small interface: `generate(requests) -> generations`.

`hf` (transformers, batched, left padding, KV cache) is the CPU default; `vllm` is the GPU default when
vllm is importable and a GPU is present. Both return exactly the token ids the model read and wrote and
the per-token log-probs of the sampled tokens at the sampling temperature.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from vlmagent.shards import read_json


@dataclass
class Request:
    """One prompt: the chat-templated text (with the model's image placeholder) and its image."""

    text: str
    image: Image.Image | None


@dataclass
class Generation:
    prompt_token_ids: list[int]  # as the model read them (image placeholder expanded, as the processor does)
    response_token_ids: list[int]  # sampled tokens, stop/eos token included when one was generated
    logprobs: list[float]  # log-prob of each sampled token at the sampling temperature
    text: str  # the response decoded, special tokens skipped


class Backend(Protocol):
    @property
    def processor(self) -> Any:
        """The model's HF processor: collect builds the chat prompts and token offsets with it."""
        ...

    def generate(
        self, requests: list[Request], temperature: float, max_new_tokens: int, seed: int
    ) -> list[Generation]: ...

    def close(self) -> None:
        """Release the model and what serves it (a vLLM engine's processes); no generate after this."""
        ...


def token_char_offsets(tokenizer, ids: list[int]) -> list[tuple[int, int]]:
    """(start, end) character span of each token in `tokenizer.decode(ids, skip_special_tokens=True)`.

    From the decoded prefixes, not from re-encoding the text: a re-encoding may split differently
    from what the sampler produced.
    """
    spans, prev = [], 0
    for i in range(len(ids)):
        end = len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True))
        spans.append((prev, max(end, prev)))
        prev = max(end, prev)
    return spans


def make_backend(name: str, policy_path: str, policy=None, **vllm_options) -> Backend:
    """`auto`: vllm when it is installed and a GPU is present, else hf (which needs the loaded policy).

    A LoRA checkpoint (vlmagent.json names a base_model) is served by vllm as an adapter on its base.
    """
    if name not in ("auto", "hf", "vllm"):
        raise ValueError(f"backend {name!r}: expected auto, hf or vllm")
    if name == "auto":
        name = "hf"
        if importlib.util.find_spec("vllm") is not None:  # importing vllm itself is slow: only if installed
            from vlmagent.rollout.vllm import vllm_platform

            name = "vllm" if vllm_platform() not in (None, "cpu") else "hf"
    if name == "vllm":
        from vlmagent.rollout.vllm import VLLMBackend

        meta_file = Path(policy_path) / "vlmagent.json"
        base = read_json(meta_file).get("base_model") if meta_file.exists() else None
        if base:
            return VLLMBackend(base, lora=policy_path, **vllm_options)
        return VLLMBackend(policy_path, **vllm_options)
    from vlmagent.policy.load import load_policy
    from vlmagent.rollout.hf import HFBackend

    return HFBackend(policy if policy is not None else load_policy(policy_path))
