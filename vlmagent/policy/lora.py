"""Optional LoRA (through peft, imported only here): adapters on the language model's linear layers, as
the paper trains; the vision tower (with LLaVA's projector) frozen or fully trained.

A LoRA checkpoint holds the adapter (adapter_config.json + adapter_model.safetensors, plus the vision
weights when they are trained) and names its base model in vlmagent.json (`base_model`); `load_policy`
loads the base and puts the adapter back on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:  # a type only: load imports this module
    from transformers import PreTrainedModel

    from vlmagent.policy.load import Policy

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ADAPTER_CONFIG = "adapter_config.json"


def _peft():
    try:
        import peft
    except ImportError as e:
        raise ImportError("LoRA needs peft: pip install peft") from e
    return peft


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def unwrap(model: nn.Module) -> PreTrainedModel:
    """The HF model under a peft wrapper (LoRA layers stay injected in it), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def apply_lora(
    policy: Policy,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: Sequence[str] = DEFAULT_TARGETS,
    train_vision: bool = False,
) -> Policy:
    """Wrap policy.model with LoRA adapters on the language model's `target_modules` (in place; returned).

    Only the language model's layers are matched (the vision tower has q_proj too); with train_vision the
    family's vision modules are trained in full and saved with the adapter.
    """
    peft = _peft()
    names = "|".join(target_modules)
    backbone = policy.family.backbone(policy.model)
    # peft saves whole modules only: LLaVA-NeXT's image_newline (a bare parameter) stays frozen with LoRA
    vision = [n for n in policy.family.vision_modules if isinstance(getattr(backbone, n, None), nn.Module)]
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=rf".*{policy.family.language_model}.*\.({names})$",
        modules_to_save=vision if train_vision else None,
    )
    training = policy.model.training
    policy.model = peft.get_peft_model(policy.model, config).train(training)  # keep eval (no dropout)
    return policy


def with_lora(policy: Policy, cfg) -> Policy:
    """The policy with LoRA adapters as cfg asks (lora, lora_r, lora_alpha, train_vision); unchanged when
    cfg.lora is off or the policy already carries adapters (a LoRA SFT checkpoint, say)."""
    if not cfg.lora or is_lora(policy.model):
        return policy
    return apply_lora(policy, r=cfg.lora_r, alpha=cfg.lora_alpha, train_vision=cfg.train_vision)


def load_lora_model(path: Path, base: str, dtype, device):
    """The base model from `base` with the adapter saved in `path` on it, trainable."""
    from transformers import AutoModelForImageTextToText

    peft = _peft()
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype)
    return peft.PeftModel.from_pretrained(model, str(path), is_trainable=True).to(device)


def base_model_of(model: nn.Module) -> str:
    return model.peft_config["default"].base_model_name_or_path
