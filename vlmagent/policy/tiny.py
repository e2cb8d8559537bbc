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
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from vlmagent.policy.checkpoint import save_checkpoint
from vlmagent.policy.load import Policy, Qwen2VLImageOnlyProcessor, family_for
from vlmagent.policy.value import ValueHead

PATCH = 14
# size -> (vision hidden, vision layers, text hidden, text layers, attention heads, kv heads)
SIZES = {
    "tiny": (128, 2, 256, 4, 4, 2),  # about 4M parameters
    "small": (256, 4, 512, 8, 8, 4),  # about 30M parameters
}
# A shipped file, not trained at init-model time: the vocabulary size sets how much of the random stream
# the embeddings draw, so a tokenizer retrained on edited prompts re-drew every weight of the model, the
# frozen vision tower's included, and moved every recipe's result (NumberLine SFT: 76% -> 34%).
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


if __name__ == "__main__":  # rebuild the shipped tokenizer from today's prompts (changes every init-model)
    train_tiny_tokenizer().save(str(TOKENIZER_FILE), pretty=False)
    print(f"wrote {TOKENIZER_FILE}")
