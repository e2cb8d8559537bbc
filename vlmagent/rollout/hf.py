"""transformers backend: one batched `generate` per env step (left padding, KV cache). The CPU default."""

from __future__ import annotations

from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from vlmagent.policy.load import Policy
from vlmagent.policy.lora import unwrap
from vlmagent.rollout import Generation, Request


class SampledLogprobs(LogitsProcessor):
    """log softmax(scores / T) of each sampled token, recorded as generation goes; then the banned
    tokens are masked out of the sampler's scores.

    It runs after transformers' own processors, so any reshaping of the distribution by them would
    show up in the recorded log-probs (and in score's gap); the temperature is applied after it. The
    recorded distribution includes the banned tokens, as the trainer's does: their mass is taken out of
    sampling only. It keeps one step of [batch x vocab] log-probs, where generate's
    `output_logits=True` would keep every step's, gigabytes for a real model's vocabulary."""

    def __init__(self, temperature: float, banned: list[int]):
        self.inv_t = 1.0 / temperature if temperature > 0 else 1.0  # greedy: the raw distribution
        self.banned = banned
        self.last: torch.Tensor | None = None  # [B, V] the latest step's log-probs
        self.taken: list[torch.Tensor] = []  # [B, 1] per step, for the tokens drawn so far

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.last is not None:  # input_ids now ends with the token drawn from self.last
            self.taken.append(self.last.gather(-1, input_ids[:, -1:]))
        self.last = torch.log_softmax(scores.float() * self.inv_t, dim=-1)
        return scores.index_fill(-1, torch.tensor(self.banned, device=scores.device), float("-inf"))

    def logprobs(self, sequences: torch.Tensor) -> torch.Tensor:
        """[B, new tokens]: the last token drawn never comes back through __call__."""
        assert self.last is not None
        return torch.cat([*self.taken, self.last.gather(-1, sequences[:, -1:])], dim=1)


def sampling_only_config(model_config: GenerationConfig) -> GenerationConfig:
    """The checkpoint's generation config without its sampling defaults (instruct checkpoints such
    as Qwen2-VL-Instruct ship a repetition_penalty, top_k, top_p ...): generate fills every
    argument we leave unset from the model's config, and collect must sample from
    softmax(logits / T), what score and update compute."""
    ids = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    return GenerationConfig(**{k: getattr(model_config, k, None) for k in ids})


class HFBackend:
    def __init__(self, policy: Policy, batch_size: int = 64):
        self.policy = policy
        self.batch_size = batch_size

    @property
    def processor(self) -> Any:
        return self.policy.processor

    def close(self) -> None:
        """Let go of the model: whoever still holds this backend (an actor's closure) no longer keeps its
        weights alive, on a GPU a second copy beside the next stage's."""
        del self.policy

    @torch.no_grad()
    def generate(
        self, requests: list[Request], temperature: float, max_new_tokens: int, seed: int
    ) -> list[Generation]:
        torch.manual_seed(seed)  # global: generate takes no torch.Generator, it samples from the global one
        out: list[Generation] = []
        for i in range(0, len(requests), self.batch_size):
            out.extend(self._generate_batch(requests[i : i + self.batch_size], temperature, max_new_tokens))
        return out

    def _generate_batch(
        self, requests: list[Request], temperature: float, max_new_tokens: int
    ) -> list[Generation]:
        policy = self.policy
        tok = policy.tokenizer
        images = [r.image for r in requests if r.image is not None]
        if images and len(images) != len(requests):
            raise ValueError("a batch must be all-image or all-text")
        enc = policy.processor(  # one image per prompt (a flat list is one prompt's images to some)
            images=[[im] for im in images] or None,
            text=[r.text for r in requests],
            return_tensors="pt",
            padding=True,
            padding_side="left",  # this call's, not the shared tokenizer's setting
        )
        enc = {k: v.to(policy.device) for k, v in enc.items()}
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(policy.lm_head.weight.dtype)
        sample = temperature > 0
        # an image placeholder in a response would ask score's forward for an image that isn't there
        recorder = SampledLogprobs(temperature, banned=[policy.family.image_token_id(policy.model)])
        model = policy.model
        hf_model = unwrap(model)  # a LoRA wrapper generates with the inner model's config
        own_config = hf_model.generation_config
        hf_model.generation_config = sampling_only_config(own_config)
        try:
            sequences = model.generate(
                **enc,
                do_sample=sample,
                temperature=temperature if sample else None,
                # sample from the whole distribution: that is what score re-scores
                top_k=0 if sample else None,
                top_p=1.0 if sample else None,
                max_new_tokens=max_new_tokens,
                pad_token_id=policy.pad_token_id,
                eos_token_id=policy.eos_token_ids or None,
                logits_processor=LogitsProcessorList([recorder]),
            )
        finally:
            hf_model.generation_config = own_config
        width = enc["input_ids"].shape[1]
        new = sequences[:, width:]
        logp = recorder.logprobs(sequences)  # [B, new tokens]
        eos = set(policy.eos_token_ids)
        results = []
        for b in range(len(requests)):
            prompt = enc["input_ids"][b][enc["attention_mask"][b].bool()].tolist()
            ids = new[b].tolist()
            end = next((t + 1 for t, x in enumerate(ids) if x in eos), len(ids))
            ids = ids[:end]
            results.append(
                Generation(
                    prompt_token_ids=prompt,
                    response_token_ids=ids,
                    logprobs=logp[b, :end].tolist(),
                    text=tok.decode(ids, skip_special_tokens=True),
                )
            )
        return results
