"""transformers backend: one batched `generate` per env step (left padding, KV cache). The CPU default."""

from __future__ import annotations

import torch

from vlmagent.policy.load import Policy
from vlmagent.rollout import Generation, Request


class HFBackend:
    def __init__(self, policy: Policy, batch_size: int = 64):
        self.policy = policy
        self.batch_size = batch_size

    @torch.no_grad()
    def generate(
        self, requests: list[Request], temperature: float, max_new_tokens: int, seed: int
    ) -> list[Generation]:
        torch.manual_seed(seed)  # generate samples from the global generator
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
        tok.padding_side = "left"
        enc = policy.processor(
            images=images or None, text=[r.text for r in requests], return_tensors="pt", padding=True
        )
        enc = {k: v.to(policy.device) for k, v in enc.items()}
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(policy.lm_head.weight.dtype)
        sample = temperature > 0
        gen = policy.model.generate(
            **enc,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_k=0 if sample else None,  # sample from the whole distribution: that is what score re-scores
            top_p=1.0 if sample else None,
            max_new_tokens=max_new_tokens,
            pad_token_id=policy.pad_token_id,
            eos_token_id=policy.eos_token_ids or None,
            # an image placeholder in a response would ask score's forward for an image that isn't there
            suppress_tokens=[policy.family.image_token_id(policy.model)],
            output_logits=True,
            return_dict_in_generate=True,
        )
        width = enc["input_ids"].shape[1]
        new = gen.sequences[:, width:]
        # log-probs of the sampled tokens at the sampling temperature (raw logits at T=0: greedy)
        logits = torch.stack(gen.logits, dim=1).float()  # [B, steps, V]; steps <= max_new_tokens
        if sample:
            logits = logits / temperature
        logp = torch.log_softmax(logits, dim=-1).gather(-1, new[:, : logits.shape[1], None]).squeeze(-1)
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
