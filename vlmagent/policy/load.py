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
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    InternVLProcessor,
    LlavaOnevisionProcessor,
    PreTrainedModel,
    Qwen3VLProcessor,
    SmolVLMProcessor,
)
from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

from vlmagent.policy.checkpoint import META_FILE, CheckpointError, check_checkpoint, is_run_checkpoint
from vlmagent.policy.lora import load_lora_model, unwrap
from vlmagent.policy.value import VALUE_HEAD_FILE, ValueHead, load_value_head

# what a processor returns for the text: the stored ids stand for them (and Family.extra_inputs)
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "labels")


# Image-only processors: the family's own processor without its video processor (which needs
# torchvision). Each __init__ is the family's less `video_processor`: transformers reads a processor's
# parts (tokenizer, image processor) and the settings it saves and reloads off that signature. A
# directory saved from one is reloaded through the same class (`AutoProcessor` would want the video
# processor); `Family.load_processor` does.


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL / Qwen2.5-VL: tokenizer + the PIL Qwen2-VL image processor + chat template."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen3VLImageOnlyProcessor(Qwen3VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class LlavaOnevisionImageOnlyProcessor(LlavaOnevisionProcessor):
    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        vision_aspect_ratio="anyres_max_9",
        **kwargs,
    ):
        super().__init__(
            image_processor,
            tokenizer,
            None,
            num_image_tokens,
            vision_feature_select_strategy,
            chat_template,
            vision_aspect_ratio=vision_aspect_ratio,
            **kwargs,
        )


class SmolVLMImageOnlyProcessor(SmolVLMProcessor):
    def __init__(self, image_processor=None, tokenizer=None, image_seq_len=169, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, image_seq_len, chat_template, **kwargs)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        # SmolVLM's own fills in the video processor's frame settings; an image prompt needs none
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


class InternVLImageOnlyProcessor(InternVLProcessor):
    def __init__(
        self, image_processor=None, tokenizer=None, image_seq_length=256, chat_template=None, **kwargs
    ):
        super().__init__(image_processor, tokenizer, None, image_seq_length, chat_template, **kwargs)


@dataclass(frozen=True)
class Family:
    name: str
    # the image-vs-text token types the model reads beside input_ids (1 on image tokens): Qwen's M-RoPE
    # ("mm_token_type_ids") or Gemma 3's bidirectional attention among image tokens ("token_type_ids")
    token_types: str | None = None
    image_only_processor: type | None = None  # processor class to fall back to without torchvision
    # under model.model: the vision tower and projector (and LLaVA-NeXT's row-end embedding, a parameter)
    vision_modules: tuple[str, ...] = ("vision_tower", "multi_modal_projector")
    language_model: str = "language_model"  # under model.model: LoRA's adapters go on its layers only
    prefix_lm: bool = False  # PaliGemma: the whole prompt attends both ways (token_type_ids 0)

    def backbone(self, model: nn.Module) -> nn.Module:
        """The model without its LM head: returns last_hidden_state (after the final norm)."""
        return unwrap(model).model

    def lm_head(self, model: nn.Module) -> nn.Linear:
        return unwrap(model).get_output_embeddings()

    def image_token_id(self, model: nn.Module) -> int:
        return int(unwrap(model).config.image_token_id)

    def extra_inputs(
        self, model: nn.Module, input_ids: torch.Tensor, prompt_lengths: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-token inputs beside input_ids for a right-padded batch of prompt + response."""
        if self.prefix_lm:  # the prompt is the prefix (0, attended both ways), the response causal (1)
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            return {"token_type_ids": (positions[None, :] >= prompt_lengths[:, None]).int()}
        if self.token_types is None:
            return {}
        return {self.token_types: (input_ids == self.image_token_id(model)).int()}

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


QWEN = dict(token_types="mm_token_type_ids", vision_modules=("visual",))
IDEFICS = dict(vision_modules=("vision_model", "connector"), language_model="text_model")
ANYRES = dict(vision_modules=("vision_tower", "multi_modal_projector", "image_newline"))
# model_type -> adapter; every one is run through the whole chain on a tiny random model (tests/test_families.py)
FAMILIES = {
    "llava": Family("llava"),
    "llava_next": Family("llava_next", **ANYRES),
    "llava_onevision": Family(
        "llava_onevision", image_only_processor=LlavaOnevisionImageOnlyProcessor, **ANYRES
    ),
    "qwen2_vl": Family("qwen2_vl", image_only_processor=Qwen2VLImageOnlyProcessor, **QWEN),
    "qwen2_5_vl": Family("qwen2_5_vl", image_only_processor=Qwen2VLImageOnlyProcessor, **QWEN),
    "qwen3_vl": Family("qwen3_vl", image_only_processor=Qwen3VLImageOnlyProcessor, **QWEN),
    "gemma3": Family("gemma3", token_types="token_type_ids"),
    "idefics3": Family("idefics3", **IDEFICS),
    "smolvlm": Family("smolvlm", image_only_processor=SmolVLMImageOnlyProcessor, **IDEFICS),
    "internvl": Family("internvl", image_only_processor=InternVLImageOnlyProcessor),
    "paligemma": Family("paligemma", prefix_lm=True),
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
    def vocab_size(self) -> int:
        """Rows of the input embedding: a token id at or above it is not one this model reads."""
        return int(unwrap(self.model).get_input_embeddings().num_embeddings)

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
        parts = [getattr(backbone, name) for name in self.family.vision_modules if hasattr(backbone, name)]
        return [
            p for part in parts for p in ([part] if isinstance(part, nn.Parameter) else part.parameters())
        ]

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
    # a value head without vlmagent.json is half a checkpoint; a run's ckpt/NNNNNN is always a whole one
    if (local / META_FILE).exists() or (local / VALUE_HEAD_FILE).exists() or is_run_checkpoint(local):
        meta = check_checkpoint(local)
    check_safetensors(local)
    dtype = dtype or default_dtype(device)
    if meta.get("base_model"):
        config = AutoConfig.from_pretrained(meta["base_model"])
        model = load_lora_model(local, meta["base_model"], dtype, device)
    else:
        config = AutoConfig.from_pretrained(src)
        model = AutoModelForImageTextToText.from_pretrained(src, dtype=dtype).to(device)
    family = family_for(config.model_type)
    softcap = getattr(config.get_text_config(), "final_logit_softcapping", None)
    if softcap is not None:  # PaliGemma 2's Gemma 2 text: logits = c * tanh(logits / c)
        raise ValueError(
            f"{src}: final_logit_softcapping = {softcap} is not supported (the fused log-prob does not cap)"
        )
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


def check_safetensors(model_dir: Path) -> None:
    """Each weight file's header parses (transformers' own error would not name the file)."""
    from safetensors import safe_open

    for f in sorted(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []:
        try:
            with safe_open(str(f), framework="pt") as st:
                st.keys()
        except Exception as e:  # SafetensorError, or an OSError for a header past the file's end
            raise CheckpointError(f"{f}: not a readable safetensors file ({str(e)[:160]})") from None


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
    # through the processor's own call, as collect did, not its image processor alone: a processor's
    # image settings override its image processor's (InternVL's crops), and the image-token count of the
    # stored ids follows the processor's
    placeholder = chat_text(policy.processor, "", with_image=True)
    enc = policy.processor(
        images=[[im] for im in present], text=[placeholder] * len(present), return_tensors="pt"
    )
    return {k: v for k, v in enc.items() if k not in TEXT_INPUTS}
