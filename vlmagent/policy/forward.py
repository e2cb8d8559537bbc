"""One policy forward pass over stored (prompt ids, response ids, images), for `score` and `update`.

The backbone runs without the LM head, so full logits are never built: we keep only the last hidden
state of the final prompt token (for the value head) and of the positions that predict each response
token (for the fused log-prob). Works from stored token ids only; nothing is re-tokenized.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from vlmagent.policy.load import Policy
from vlmagent.policy.logprob import token_logprobs
from vlmagent.ppo import action_logprob


@dataclass
class PolicyHidden:
    prompt_last: Tensor  # [B, H] last hidden state of each prompt's final token
    response: Tensor  # [sum(lengths), H] packed: row j of sample b predicts response token j
    response_ids: Tensor  # [sum(lengths)] long: the response tokens, packed the same way
    lengths: Tensor  # [B] long: response lengths


def forward_hidden(
    policy: Policy,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    vision_inputs: dict[str, Tensor] | None = None,
) -> PolicyHidden:
    """Run the backbone once on a right-padded batch of prompt + response.

    prompt_ids: the processor's input_ids as stored (image tokens already expanded); vision_inputs:
    `model_inputs_for(policy, images)` for the same batch (one image per sample that has one, in order).
    """
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("empty prompt: the value needs a final prompt token")
    device = policy.device
    # the last response token predicts nothing we score, so it is not fed
    seqs = [list(p) + list(r)[:-1] for p, r in zip(prompt_ids, response_ids, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), policy.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[b, : len(s)] = 1
    ids, mask = ids.to(device), mask.to(device)
    plen = torch.tensor([len(p) for p in prompt_ids], dtype=torch.long, device=device)
    extra = policy.family.extra_inputs(policy.model, ids, plen)
    vision = {k: v.to(device) for k, v in (vision_inputs or {}).items()}
    if "pixel_values" in vision:
        vision["pixel_values"] = vision["pixel_values"].to(policy.lm_head.weight.dtype)
    out = policy.family.backbone(policy.model)(
        input_ids=ids, attention_mask=mask, use_cache=False, **extra, **vision
    )
    last = out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1])  # [B * width, H]

    lengths = torch.tensor([len(r) for r in response_ids], dtype=torch.long, device=device)
    row0 = torch.arange(len(seqs), device=device) * width + plen - 1  # flat index of each final prompt token
    seq = torch.repeat_interleave(torch.arange(len(seqs), device=device), lengths)
    pos = torch.arange(int(lengths.sum()), device=device) - (torch.cumsum(lengths, 0) - lengths)[seq]
    resp_ids = [t for r in response_ids for t in r]
    return PolicyHidden(
        prompt_last=last[row0],
        response=last[row0[seq] + pos],
        response_ids=torch.tensor(resp_ids, dtype=torch.long, device=device),
        lengths=lengths,
    )


def evaluate_actions(
    policy: Policy,
    hidden: PolicyHidden,
    action_start: Sequence[int] | Tensor,
    temperature: float,
    cot_lambda: float,
    with_entropy: bool = False,
) -> dict[str, Tensor]:
    """values [B], token log-probs [sum(lengths)], action log-probs [B] (and entropies) from one forward."""
    out = token_logprobs(
        hidden.response, policy.lm_head.weight, hidden.response_ids, temperature, with_entropy=with_entropy
    )
    logp, ent = out if with_entropy else (out, None)
    res = {
        "values": policy.value_head(hidden.prompt_last),
        "token_logprobs": logp,
        "action_logprobs": action_logprob(logp, action_start, cot_lambda, lengths=hidden.lengths),
    }
    if ent is not None:
        res["entropy"] = ent
    return res
