"""`vlmagent init-model`: a randomly initialised LLaVA-architecture model that builds offline in seconds.

CLIP vision tower + Llama decoder, our own byte-level BPE tokenizer (`data/tiny/tokenizer.json`,
trained on the envs' prompts and oracle responses plus plain ASCII; byte-level, so any text
round-trips), a chat template, and a
PIL CLIP image processor at `image_size` (112 px: cheap on a CPU). The image token count equals the
vision patch count: the processor adds one token for CLIP's CLS embedding
(`num_additional_image_tokens=1`) and takes it away again (`vision_feature_select_strategy="default"`),
just as the model drops CLS. Saved as a vlmagent checkpoint, which is a plain HF model dir (safetensors)
that `AutoModelForImageTextToText` / `AutoProcessor` load with no vlmagent code, plus the value head.

`build_tiny_qwen2_vl` makes a Qwen2-VL model the same way, for testing that family's adapter.
"""

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    CLIPVisionConfig,
    Gemma3Config,
    Gemma3Processor,
    Gemma3TextConfig,
    GemmaConfig,
    Idefics3Config,
    Idefics3Processor,
    InternVLConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextProcessor,
    LlavaOnevisionConfig,
    LlavaProcessor,
    PaliGemmaConfig,
    PaliGemmaProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2Config,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen3VLConfig,
    SiglipVisionConfig,
    SmolVLMConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

from vlmagent.policy.checkpoint import save_checkpoint
from vlmagent.policy.load import (
    InternVLImageOnlyProcessor,
    LlavaOnevisionImageOnlyProcessor,
    Policy,
    Qwen2VLImageOnlyProcessor,
    Qwen3VLImageOnlyProcessor,
    SmolVLMImageOnlyProcessor,
    family_for,
)
from vlmagent.policy.value import ValueHead

PATCH = 14
# size -> (vision hidden, vision layers, text hidden, text layers, attention heads, kv heads)
SIZES = {
    "tiny": (128, 2, 256, 4, 4, 2),  # about 4M parameters
    "small": (256, 4, 512, 8, 8, 4),  # about 30M parameters
}
# A shipped file, not trained at init-model time: the vocabulary size sets how much of the random stream
# the embeddings draw, so a tokenizer retrained on edited prompts re-drew every weight of the model, the
# frozen vision tower's included, and moved every recipe's result (the README's warm-start notes).
# Rebuild it deliberately (`python -m vlmagent.policy.tiny`) and re-measure the recipes after.
TOKENIZER_FILE = Path(__file__).resolve().parents[2] / "data" / "tiny" / "tokenizer.json"
IMAGE_TOKEN, PAD, END = "<image>", "<|pad|>", "<|end|>"
ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
# <|role|>\n content <|end|>\n per message; the image goes first in a user turn
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def corpus() -> list[str]:
    """Tokenizer training text: the envs' prompts and oracle responses, plus plain ASCII."""
    from vlmagent.prompts import corpus_texts

    return corpus_texts() + [string.printable, string.ascii_letters + string.digits + string.punctuation]


def train_tiny_tokenizer() -> Tokenizer:
    """What `data/tiny/tokenizer.json` was trained as: BPE up to 4,096 tokens (it stops far below, at
    tokens seen twice) on `corpus()` with the LLaVA model's special tokens."""
    return train_tokenizer(corpus(), 4096, [PAD, END, IMAGE_TOKEN, *ROLES])


def train_tokenizer(texts: list[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """Byte-level BPE: the 256 byte symbols are always in the vocabulary, so any text round-trips."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def _fast_tokenizer(tok: Tokenizer, **special) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        clean_up_tokenization_spaces=False,  # would turn " ." into "." and break round trips
        model_max_length=4096,
        **special,
    )


def build_llava(size: str = "tiny", seed: int = 0, image_size: int = 112, patch_size: int = PATCH):
    """(model, processor) for init-model, deterministic given seed.

    Fewer, larger patches (28 px at 112 px: 16 image tokens) are what a tiny LM learns to read digits
    from when the vision tower stays at its random init; 14 px (64 tokens) is CLIP's own.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    if patch_size < 1 or image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of the patch size {patch_size}")
    v_hidden, v_layers, t_hidden, t_layers, heads, kv_heads = SIZES[size]
    tok = Tokenizer.from_file(str(TOKENIZER_FILE))
    tokenizer = _fast_tokenizer(
        tok, pad_token=PAD, eos_token=END, extra_special_tokens={"image_token": IMAGE_TOKEN}
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    n_patches = (image_size // patch_size) ** 2
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        hidden_size=v_hidden,
        intermediate_size=4 * v_hidden,
        num_hidden_layers=v_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=v_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t_hidden,
        intermediate_size=3 * t_hidden,
        num_hidden_layers=t_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=n_patches,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model.eval(), processor


def init_model(
    out: Path, size: str = "tiny", seed: int = 0, image_size: int = 112, patch_size: int = PATCH
) -> Path:
    """Build a random LLaVA model (see module doc) and save it as checkpoint `out` (step 0, no parent)."""
    model, processor = build_llava(size, seed, image_size, patch_size)
    value_head = ValueHead(model.config.text_config.hidden_size, seed=seed)
    meta = {
        "step": 0,
        "parent": None,
        "source": "init-model",
        "size": size,
        "seed": seed,
        "image_size": image_size,
        "patch_size": patch_size,
    }
    return save_checkpoint(
        Path(out), Policy(model, processor, value_head, family_for(model.config.model_type)), meta
    )


# Qwen2-VL ---------------------------------------------------------------------------------------

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen2_vl(out: Path, seed: int = 0, image_size: int = 112) -> Path:
    """A random tiny Qwen2-VL (M-RoPE, merged patches) with our tokenizer, saved as a plain HF dir."""
    specials = [*QWEN_SPECIALS, "<|image_pad|>", "<|video_pad|>"]
    tok = train_tokenizer(corpus(), 1024, specials)
    tokenizer = _fast_tokenizer(
        tok,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    # any image becomes image_size x image_size (the limits bracket that one size of the 28 px grid)
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=image_size**2, max_pixels=(image_size + 2 * PATCH) ** 2 - 1
    )
    processor = Qwen2VLImageOnlyProcessor(image_processor, tokenizer, chat_template=QWEN_TEMPLATE)
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


# Every family users bring ------------------------------------------------------------------------
# One tiny random model per family, built from the family's own config and processor classes around our
# shipped tokenizer (plus the family's special tokens) and our chat template with the family's image
# placeholder: two text layers of width 64, a vision tower of one or two layers, 2-16 image tokens.
# `build_tiny(family, out)` saves it as a plain HF dir; tests/test_families.py runs each through the chain.

TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=4096,
    bos_token_id=None,
    tie_word_embeddings=False,
)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def _family_tokenizer(image_tokens: dict[str, str], *other: str) -> PreTrainedTokenizerFast:
    """The shipped tokenizer with the family's image tokens (named as its processor reads them from the
    tokenizer, e.g. {"image_token": "<image>"}) and other special tokens added."""
    tok = Tokenizer.from_file(str(TOKENIZER_FILE))
    tok.add_special_tokens([t for t in [*image_tokens.values(), *other] if tok.token_to_id(t) is None])
    return _fast_tokenizer(tok, pad_token=PAD, eos_token=END, extra_special_tokens=image_tokens)


def _template(image: str) -> str:
    """Our chat template (the tiny LLaVA's) with the family's image placeholder in a user turn."""
    return CHAT_TEMPLATE.replace("<image>\n", image)


def _text(tokenizer: PreTrainedTokenizerFast, **over) -> dict:
    return {
        **TINY_TEXT,
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **over,
    }


def _llava_next():
    """CLIP + Llama, any-resolution tiles: a 28 px base view plus 28 px tiles of the best-fitting grid
    (newline embeddings between rows); the processor counts tokens from the image size."""
    tokenizer = _family_tokenizer({"image_token": IMAGE_TOKEN})
    size = 28
    pinpoints = [[size, 2 * size], [2 * size, size], [2 * size, 2 * size]]
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            size={"shortest_edge": size},
            crop_size={"height": size, "width": size},
            image_grid_pinpoints=pinpoints,
        ),
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_template("<image>\n"),
    )
    config = LlavaNextConfig(
        vision_config=CLIPVisionConfig(**TINY_VISION, image_size=size, patch_size=PATCH, projection_dim=32),
        text_config=LlamaConfig(**_text(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    return config, processor


def _llava_onevision():
    """SigLIP + Qwen2, any-resolution tiles like LLaVA-NeXT (its own count: unpadded, capped at 9 tiles)."""
    tokenizer = _family_tokenizer({"image_token": IMAGE_TOKEN, "video_token": "<video>"})
    size, patch = 28, 14
    pinpoints = [[size, 2 * size], [2 * size, size], [2 * size, 2 * size]]
    processor = LlavaOnevisionImageOnlyProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(
            size={"height": size, "width": size}, image_grid_pinpoints=pinpoints
        ),
        tokenizer=tokenizer,
        num_image_tokens=(size // patch) ** 2,
        vision_feature_select_strategy="full",
        chat_template=_template("<image>\n"),
    )
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**TINY_VISION, image_size=size, patch_size=patch),
        text_config=Qwen2Config(**_text(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        tie_word_embeddings=False,
    )
    return config, processor


QWEN_IMAGE = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
QWEN_VISION = ("<|vision_start|>", "<|vision_end|>")


def _qwen_ids(tokenizer) -> dict:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in [*QWEN_IMAGE.values(), *QWEN_VISION]}
    return dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def _qwen2_5_vl():
    """Qwen2.5-VL: window attention in the vision tower, M-RoPE; 56 px -> 4 merged tokens."""
    tokenizer = _family_tokenizer(QWEN_IMAGE, *QWEN_VISION)
    size = 56
    processor = Qwen2VLImageOnlyProcessor(
        Qwen2VLImageProcessorPil(min_pixels=size**2, max_pixels=size**2),
        tokenizer,
        chat_template=_template("<|vision_start|><|image_pad|><|vision_end|>"),
    )
    config = Qwen2_5_VLConfig(
        text_config=_text(
            tokenizer,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=64,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        **_qwen_ids(tokenizer),
    )
    return config, processor


def _qwen3_vl():
    """Qwen3-VL: 16 px patches (64 px -> 4 merged tokens), interleaved M-RoPE, DeepStack features
    added into the first text layers."""
    tokenizer = _family_tokenizer(QWEN_IMAGE, *QWEN_VISION)
    size, patch = 64, 16
    processor = Qwen3VLImageOnlyProcessor(
        image_processor=Qwen2VLImageProcessorPil(patch_size=patch, min_pixels=size**2, max_pixels=size**2),
        tokenizer=tokenizer,
        chat_template=_template("<|vision_start|><|image_pad|><|vision_end|>"),
    )
    config = Qwen3VLConfig(
        text_config=_text(
            tokenizer,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
            },
        ),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=patch,
            out_hidden_size=64,
            num_position_embeddings=16,
            deepstack_visual_indexes=[0],
        ),
        **_qwen_ids(tokenizer),
    )
    return config, processor


def _gemma3():
    """SigLIP + Gemma 3 text (a sliding-window layer and a global one; image tokens attend both ways);
    28 px, 4 patches average-pooled to `mm_tokens_per_image`."""
    image_tokens = {
        "image_token": "<image_soft_token>",
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
    }
    tokenizer = _family_tokenizer(image_tokens)
    size, patch, n_tokens = 28, 7, 4
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": size, "width": size}),
        tokenizer=tokenizer,
        image_seq_length=n_tokens,
        chat_template=_template("<start_of_image>"),
    )
    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in image_tokens.items()}
    config = Gemma3Config(
        text_config=Gemma3TextConfig(
            **_text(
                tokenizer,
                sliding_window=8,
                layer_types=["sliding_attention", "full_attention"],
                query_pre_attn_scalar=16,
            )
        ),
        vision_config=SiglipVisionConfig(**TINY_VISION, image_size=size, patch_size=patch),
        mm_tokens_per_image=n_tokens,
        boi_token_index=ids["boi_token"],
        eoi_token_index=ids["eoi_token"],
        image_token_index=ids["image_token"],
        tie_word_embeddings=False,
    )
    return config, processor


IDEFICS_TOKENS = ("<fake_token_around_image>", "<global-img>", "<end_of_utterance>")


def _idefics3(model_type: str = "idefics3"):
    """Idefics3 / SmolVLM: SigMLIP-like encoder + pixel shuffle (scale 2) + Llama; the image is split into
    tiles of `max_image_size` (rows and columns tagged) plus a global view."""
    smol = model_type == "smolvlm"
    tokenizer = _family_tokenizer({"image_token": IMAGE_TOKEN}, *IDEFICS_TOKENS)
    size, patch, scale = 32, 8, 2
    image_seq_len = (size // patch) ** 2 // scale**2
    image_processor = (SmolVLMImageProcessorPil if smol else Idefics3ImageProcessorPil)(
        size={"longest_edge": 2 * size}, max_image_size={"longest_edge": size}
    )
    processor_class = SmolVLMImageOnlyProcessor if smol else Idefics3Processor
    processor = processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=_template("<image>"),
    )
    config_class = SmolVLMConfig if smol else Idefics3Config
    config = config_class(
        vision_config=dict(**TINY_VISION, image_size=size, patch_size=patch),
        text_config=LlamaConfig(**_text(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        scale_factor=scale,
        tie_word_embeddings=False,
    )
    return config, processor


def _internvl():
    """InternViT + pixel shuffle (ratio 0.5) + Qwen2; 28 px crops and a thumbnail, 4 tokens each, in
    <img>...</img>."""
    image_tokens = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tokenizer = _family_tokenizer(image_tokens)
    size, patch = 28, 7
    processor = InternVLImageOnlyProcessor(
        # the processor crops (its default); up to 4 crops + a thumbnail: 20 tokens
        image_processor=GotOcr2ImageProcessorPil(size={"height": size, "width": size}, max_patches=4),
        tokenizer=tokenizer,
        image_seq_length=(size // patch) ** 2 // 4,
        chat_template=_template("<IMG_CONTEXT>\n"),
    )
    config = InternVLConfig(
        vision_config=dict(**TINY_VISION, image_size=size, patch_size=patch),
        text_config=Qwen2Config(**_text(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=(size // patch) ** 2 // 4,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
    )
    return config, processor


def _paligemma():
    """SigLIP + Gemma as a prefix LM: image tokens and the prompt attend both ways, the response causally;
    the processor puts the image tokens and a BOS before the prompt itself (16 tokens at 28 px)."""
    tokenizer = _family_tokenizer({"image_token": IMAGE_TOKEN}, "<bos>")
    tokenizer.bos_token = "<bos>"
    size, patch = 28, 7
    image_processor = SiglipImageProcessorPil(size={"height": size, "width": size})
    image_processor.image_seq_length = (size // patch) ** 2
    # (the processor adds PaliGemma's 1,152 location and segmentation tokens to the tokenizer)
    processor = PaliGemmaProcessor(image_processor, tokenizer, chat_template=_template("<image>"))
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**TINY_VISION, image_size=size, patch_size=patch, projection_dim=64),
        text_config=GemmaConfig(**_text(tokenizer)),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projection_dim=64,
        hidden_size=64,
        vocab_size=len(tokenizer),
        tie_word_embeddings=False,
    )
    return config, processor


TINY_FAMILIES = {
    "llava_next": _llava_next,
    "llava_onevision": _llava_onevision,
    "qwen2_5_vl": _qwen2_5_vl,
    "qwen3_vl": _qwen3_vl,
    "gemma3": _gemma3,
    "idefics3": _idefics3,
    "smolvlm": lambda: _idefics3("smolvlm"),
    "internvl": _internvl,
    "paligemma": _paligemma,
}


def build_tiny(family: str, out: Path, seed: int = 0) -> Path:
    """A tiny random model of `family` (llava and qwen2_vl: init-model and build_tiny_qwen2_vl), saved as
    a plain HF dir that `load_policy` loads."""
    if family == "llava":
        return init_model(out, seed=seed)
    if family == "qwen2_vl":
        return build_tiny_qwen2_vl(out, seed=seed)
    if family not in TINY_FAMILIES:
        raise ValueError(
            f"no tiny builder for {family!r}; known: llava, qwen2_vl, {', '.join(TINY_FAMILIES)}"
        )
    config, processor = TINY_FAMILIES[family]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config)
        if family == "gemma3":  # Gemma 3 starts its image projection at zero: the image would change nothing
            torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.02)
    tokenizer = processor.tokenizer
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


if __name__ == "__main__":  # rebuild the shipped tokenizer from today's prompts (changes every init-model)
    train_tiny_tokenizer().save(str(TOKENIZER_FILE), pretty=False)
    print(f"wrote {TOKENIZER_FILE}")
