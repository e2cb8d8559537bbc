"""Load any supported HF vision-language model as a policy: model + processor + value head.

Everything model-specific lives in `Family` (one small adapter per family): which module is the
backbone (its last hidden state is already through the final norm) and which is the LM head, extra
per-token inputs the model wants (Qwen2-VL's M-RoPE needs text/image token types), and how to get a
processor without torchvision. The prompt itself is built through the processor's own chat template.
"""

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PreTrainedModel
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

from vlmagent.policy.checkpoint import META_FILE, check_checkpoint
from vlmagent.policy.lora import load_lora_model, unwrap
from vlmagent.policy.value import VALUE_HEAD_FILE, ValueHead, load_value_head


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL / Qwen2.5-VL processor without the video processor (which needs torchvision).

    Tokenizer + the PIL Qwen2-VL image processor + chat template. A directory saved from it must be
    reloaded through this class (`AutoProcessor` would return the bare tokenizer); `load_processor` does.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


@dataclass(frozen=True)
class Family:
    name: str
    mm_token_types: bool = False  # pass mm_token_type_ids (0 text, 1 image) beside input_ids
    image_only_processor: type | None = None  # processor class to fall back to without torchvision
    vision_modules: tuple[str, ...] = ("vision_tower", "multi_modal_projector")  # under model.model

    def backbone(self, model: nn.Module) -> nn.Module:
        """The model without its LM head: returns last_hidden_state (after the final norm)."""
        return unwrap(model).model

    def lm_head(self, model: nn.Module) -> nn.Linear:
        return unwrap(model).get_output_embeddings()

    def image_token_id(self, model: nn.Module) -> int:
        return int(unwrap(model).config.image_token_id)

    def extra_inputs(self, model: nn.Module, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.mm_token_types:
            return {}
        return {"mm_token_type_ids": (input_ids == self.image_token_id(model)).int()}

    def load_processor(self, path: str | Path) -> ProcessorMixin:
        err: Exception | None = None
        try:
            proc = AutoProcessor.from_pretrained(path)
            if isinstance(proc, ProcessorMixin) and hasattr(proc, "image_processor"):
                return proc
        except Exception as e:  # e.g. a video processor that needs torchvision; retried below
            err = e
        if self.image_only_processor is None:
            raise ValueError(f"{path}: AutoProcessor gave no image processor") from err
        return self.image_only_processor.from_pretrained(path)


FAMILIES = {
    "llava": Family("llava"),
    "llava_next": Family("llava_next"),
    "qwen2_vl": Family("qwen2_vl", True, Qwen2VLImageOnlyProcessor, vision_modules=("visual",)),
    "qwen2_5_vl": Family("qwen2_5_vl", True, Qwen2VLImageOnlyProcessor, vision_modules=("visual",)),
}


def family_for(model_type: str) -> Family:
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    warnings.warn(
        f"model_type {model_type!r} is not one of the tested families ({', '.join(FAMILIES)}); "
        "trying it like LLaVA",
        stacklevel=2,
    )
    return Family(model_type)


@dataclass
class Policy:
    model: PreTrainedModel
    processor: ProcessorMixin
    value_head: ValueHead
    family: Family
    meta: dict = field(default_factory=dict)  # vlmagent.json of a checkpoint, {} for a plain HF model
    source: str = ""

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def lm_head(self) -> nn.Linear:
        return self.family.lm_head(self.model)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    @property
    def eos_token_ids(self) -> list[int]:
        eos = unwrap(self.model).generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        return [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))

    def vision_parameters(self) -> list[nn.Parameter]:
        """The vision tower's and projector's parameters (the family names its vision modules)."""
        backbone = self.family.backbone(self.model)
        modules = [getattr(backbone, name) for name in self.family.vision_modules if hasattr(backbone, name)]
        return [p for m in modules for p in m.parameters()]

    def freeze_vision(self) -> None:
        """No gradient for the vision tower and projector: sft and update leave them as loaded."""
        for p in self.vision_parameters():
            p.requires_grad_(False)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | torch.device) -> torch.dtype:
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def load_policy(
    path_or_hub_id: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    value_seed: int = 0,
) -> Policy:
    """Model + processor + value head from a checkpoint dir, a plain HF model dir, or a hub id.

    A vlmagent checkpoint (a dir with vlmagent.json) is checked for completeness first (CheckpointError
    naming what is missing); a LoRA one is loaded onto its base model. A plain HF model (no
    value_head.safetensors) gets a fresh value head from `value_seed`. dtype: bf16 on GPU, fp32 on
    CPU unless given; the value head stays fp32.
    """
    local = Path(path_or_hub_id)
    text = str(path_or_hub_id)
    if not local.exists() and (local.is_absolute() or text.startswith(".") or text.count("/") > 1):
        raise FileNotFoundError(f"{text}: no such model directory")  # not a hub id (org/name) either
    # a local dir by its absolute path: a LoRA checkpoint names its base by the path the base came from
    src = str(local.resolve()) if local.exists() else text
    meta: dict[str, Any] = {}
    if (local / META_FILE).exists() or (local / VALUE_HEAD_FILE).exists():
        meta = check_checkpoint(local)  # a value head without vlmagent.json is half a checkpoint
    dtype = dtype or default_dtype(device)
    if meta.get("base_model"):
        config = AutoConfig.from_pretrained(meta["base_model"])
        model = load_lora_model(local, meta["base_model"], dtype, device)
    else:
        config = AutoConfig.from_pretrained(src)
        model = AutoModelForImageTextToText.from_pretrained(src, dtype=dtype).to(device)
    family = family_for(config.model_type)
    model.eval()
    processor = family.load_processor(src)
    hidden_size = family.lm_head(model).weight.shape[1]
    if (local / VALUE_HEAD_FILE).exists():
        value_head = load_value_head(local / VALUE_HEAD_FILE, device)
        if value_head.hidden_size != hidden_size:
            raise ValueError(
                f"{local / VALUE_HEAD_FILE}: hidden size {value_head.hidden_size} != {hidden_size}"
            )
    else:
        value_head = ValueHead(hidden_size, seed=value_seed).to(device)
    return Policy(model, processor, value_head, family, meta, src)


def chat_text(processor: ProcessorMixin, text: str, with_image: bool) -> str:
    """The prompt string the model reads: the processor's chat template around one user turn."""
    content: list[dict] = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": text})
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _as_image(image: Image.Image | bytes) -> Image.Image:
    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    return image.convert("RGB") if image.mode != "RGB" else image


def encode_prompt(
    policy: Policy, image: Image.Image | bytes | None, text: str
) -> tuple[list[int], dict[str, torch.Tensor]]:
    """Token ids of the full prompt (image token already expanded to one per image feature) and the
    processor's tensors for generation (input_ids, attention_mask, pixel_values, ... batch of one).

    Store the ids: `score` and `update` rebuild the pixels with `model_inputs_for` and never re-tokenize.
    """
    images = [_as_image(image)] if image is not None else None
    enc = policy.processor(
        images=images, text=chat_text(policy.processor, text, image is not None), return_tensors="pt"
    )
    return enc["input_ids"][0].tolist(), dict(enc)


def model_inputs_for(policy: Policy, images: Sequence[Image.Image | bytes | None]) -> dict[str, torch.Tensor]:
    """Vision inputs (pixel_values, image_grid_thw / image_sizes, ...) for a batch, one image per sample
    that has one, in batch order: what the processor gave at collect time, rebuilt from the stored PNGs."""
    present = [_as_image(im) for im in images if im is not None]
    if not present:
        return {}
    return dict(policy.processor.image_processor(images=present, return_tensors="pt"))
