"""The policy: any HF vision-language model + value head, checkpoints, the tiny offline model, and the
fused log-prob (the CoT-scaled action log-prob is PPO's: vlmagent/ppo.py). See load.py (loading, family adapters), forward.py (one forward pass over stored ids),
logprob.py, value.py, checkpoint.py, lora.py (optional, needs peft), tiny.py."""

from vlmagent.policy.checkpoint import CheckpointError, check_checkpoint, save_checkpoint
from vlmagent.policy.forward import PolicyHidden, evaluate_actions, forward_hidden
from vlmagent.policy.load import (
    FAMILIES,
    Family,
    Policy,
    chat_text,
    encode_prompt,
    load_policy,
    model_inputs_for,
)
from vlmagent.policy.logprob import naive_token_logprobs, token_logprobs
from vlmagent.policy.lora import apply_lora
from vlmagent.policy.tiny import init_model
from vlmagent.policy.value import ValueHead, load_value_head, save_value_head

__all__ = [
    "FAMILIES",
    "CheckpointError",
    "Family",
    "Policy",
    "PolicyHidden",
    "ValueHead",
    "apply_lora",
    "chat_text",
    "check_checkpoint",
    "encode_prompt",
    "evaluate_actions",
    "forward_hidden",
    "init_model",
    "load_policy",
    "load_value_head",
    "model_inputs_for",
    "naive_token_logprobs",
    "save_checkpoint",
    "save_value_head",
    "token_logprobs",
]
