"""init-model output, loading, the forward helper from stored ids, value head and checkpoints."""

import io
import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmagent.policy import (
    CheckpointError,
    ValueHead,
    encode_prompt,
    evaluate_actions,
    forward_hidden,
    init_model,
    load_policy,
    load_value_head,
    model_inputs_for,
    save_checkpoint,
    save_value_head,
    token_logprobs,
)
from vlmagent.policy.load import Qwen2VLImageOnlyProcessor
from vlmagent.prompts import action_token_start, corpus_texts

PROMPT = 'Target: 3, Current: 1. What now? Answer as {"thoughts": ..., "action": ...}'


def _image(seed: int = 0, size: int = 300) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_policy(tiny_model_dir)


@pytest.fixture(scope="module")
def qwen_policy(tiny_qwen_dir):
    return load_policy(tiny_qwen_dir)


def test_init_model_loads_with_plain_transformers_and_generates(tiny_model_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e6 < n_params < 1e7, n_params
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=_image(), text=text, return_tensors="pt")
    assert inputs["pixel_values"].shape[-2:] == (112, 112)
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == (112 // 14) ** 2  # one token per vision patch
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert (
        out.shape == (1, inputs["input_ids"].shape[1] + 6) or out[0, -1] == processor.tokenizer.eos_token_id
    )
    assert (Path(tiny_model_dir) / "model.safetensors").exists()


def test_init_model_is_deterministic(tmp_path, tiny_model_dir):
    again = init_model(tmp_path / "a")
    other = init_model(tmp_path / "b", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "value_head.safetensors", "config.json"):
        assert (again / name).read_bytes() == (Path(tiny_model_dir) / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="size"):
        init_model(tmp_path / "c", size="huge")


def test_init_model_does_not_change_when_the_prompts_do(tmp_path, tiny_model_dir, monkeypatch):
    """A prompt edit (13b6c19's Points24 CoT) once retrained the tokenizer, changed the vocabulary size and
    so re-drew every random weight: NumberLine's SFT went from 76% to 34%. The tokenizer is a shipped file."""
    import vlmagent.prompts

    monkeypatch.setattr(vlmagent.prompts, "corpus_texts", lambda *a, **k: ["edited prompts " * 50])
    again = init_model(tmp_path / "a")
    assert (again / "model.safetensors").read_bytes() == (
        Path(tiny_model_dir) / "model.safetensors"
    ).read_bytes()
    # the shipped tokenizer still encodes today's prompts and answers exactly (byte-level BPE)
    tok = load_policy(again).tokenizer
    for text in corpus_texts(n_episodes=2):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_init_model_patch_size_sets_the_image_token_count(tmp_path):
    out = init_model(tmp_path / "p28", patch_size=28)
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=_image(), text=text, return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == (112 // 28) ** 2
    assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]  # tokens and patches agree
    with pytest.raises(ValueError, match="patch size 30"):
        init_model(tmp_path / "bad", patch_size=30)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_tokenizer_round_trips_any_text(policy, text):
    enc = policy.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert policy.tokenizer.decode(enc["input_ids"]) == text
    assert all(0 <= a <= b <= len(text) for a, b in enc["offset_mapping"])


def test_tokenizer_round_trips_fixed_texts_with_offsets(policy):
    tok = policy.tokenizer
    texts = [
        string.printable,
        "héllo wörld ☃ 日本語 🎲",
        '{"thoughts": "12 = 3 * 4", "action": "="}',
        "  a\n\tb  ",
    ]
    for text in texts:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        assert tok.decode(enc["input_ids"]) == text
    # the offsets locate the CoT/action boundary in token space (what collect stores)
    resp = '{"thoughts": "the \\"action\\": is +", "action": "+"}'
    enc = tok(resp, add_special_tokens=False, return_offsets_mapping=True)
    start = action_token_start(resp, enc["offset_mapping"])
    assert 0 < start < len(enc["input_ids"])
    assert tok.decode(enc["input_ids"][start:]).lstrip(", ").startswith('"action": "+"')
    assert '"action": "+"' not in tok.decode(enc["input_ids"][:start])


def test_stored_ids_and_rebuilt_pixels_equal_processor_path(policy):
    image = _image(1)
    ids, inputs = encode_prompt(policy, image, PROMPT)
    assert ids == inputs["input_ids"][0].tolist()
    # the model's own forward on the processor's tensors
    with torch.no_grad():
        ref = policy.family.backbone(policy.model)(**inputs).last_hidden_state[0, -1]
        logits = policy.model(**inputs).logits[0, -1]
        # stored ids + pixels rebuilt from the PNG the rollout stored
        hid = forward_hidden(policy, [ids], [[5, 7]], model_inputs_for(policy, [_png(image)]))
    assert torch.allclose(hid.prompt_last[0], ref, atol=1e-5)
    assert torch.equal(hid.response_ids, torch.tensor([5, 7]))
    lp = token_logprobs(hid.response[:1], policy.lm_head.weight, hid.response_ids[:1], temperature=0.2)
    assert torch.allclose(lp, torch.log_softmax(logits / 0.2, -1)[5:6], atol=1e-4)


def test_padded_batch_equals_one_by_one(policy):
    images = [_image(2), None, _image(3)]
    prompts = [encode_prompt(policy, im, PROMPT + "!" * i)[0] for i, im in enumerate(images)]
    responses = [[10, 11, 12, 13], [14], [15, 16]]
    with torch.no_grad():
        batch = forward_hidden(policy, prompts, responses, model_inputs_for(policy, images))
        singles = [
            forward_hidden(policy, [p], [r], model_inputs_for(policy, [im]))
            for p, r, im in zip(prompts, responses, images, strict=True)
        ]
        out = evaluate_actions(policy, batch, [2, 0, 5], temperature=0.2, cot_lambda=0.5, with_entropy=True)
    assert batch.response.shape == (7, policy.lm_head.weight.shape[1])
    assert torch.allclose(batch.prompt_last, torch.cat([s.prompt_last for s in singles]), atol=1e-5)
    assert torch.allclose(batch.response, torch.cat([s.response for s in singles]), atol=1e-5)
    assert out["values"].shape == (3,) and out["action_logprobs"].shape == (3,)
    assert out["token_logprobs"].shape == out["entropy"].shape == (7,)
    lp = out["token_logprobs"]
    assert torch.allclose(out["action_logprobs"][0], 0.5 * lp[:2].sum() + lp[2:4].sum())


def test_gradients_flow_to_model_and_value_head(policy):
    ids, _ = encode_prompt(policy, _image(4), PROMPT)
    hid = forward_hidden(policy, [ids], [[20, 21, 22]], model_inputs_for(policy, [_image(4)]))
    out = evaluate_actions(policy, hid, [1], temperature=1.0, cot_lambda=0.5)
    (out["action_logprobs"].sum() + out["values"].sum()).backward()
    assert policy.lm_head.weight.grad is not None and policy.lm_head.weight.grad.abs().sum() > 0
    assert policy.value_head.net[-1].weight.grad.abs().sum() > 0
    policy.model.zero_grad(set_to_none=True)
    policy.value_head.zero_grad(set_to_none=True)


def test_value_head_save_load_and_linear(tmp_path):
    for dims in [(1024, 512), ()]:
        head = ValueHead(16, dims, seed=3)
        head.net[-1].weight.data.normal_()
        save_value_head(head, tmp_path / "v.safetensors")
        back = load_value_head(tmp_path / "v.safetensors")
        assert back.hidden_dims == tuple(dims)
        x = torch.randn(4, 16)
        assert torch.equal(back(x), head(x)) and head(x).shape == (4,)
    assert torch.equal(ValueHead(16, seed=1).net[0].weight, ValueHead(16, seed=1).net[0].weight)


def test_checkpoint_round_trip_and_missing_files(tmp_path, policy):
    policy.value_head.net[-1].bias.data.fill_(0.25)
    meta = {"parent": "ckpt/000000", "step": 1, "config_hash": "abc"}
    extra = {"optimizer.pt": lambda p: torch.save({"lr": 1e-5}, p)}
    ck = save_checkpoint(tmp_path / "ckpt" / "000001", policy, meta, extra)
    policy.value_head.net[-1].bias.data.zero_()
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["000001"]  # no temp dir left behind
    back = load_policy(ck)
    assert (
        back.meta["step"] == 1
        and back.meta["parent"] == "ckpt/000000"
        and "optimizer.pt" in back.meta["files"]
    )
    assert float(back.value_head.net[-1].bias.detach()) == 0.25
    for (name, a), (_, b) in zip(
        policy.model.state_dict().items(), back.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert torch.load(ck / "optimizer.pt")["lr"] == 1e-5
    with pytest.raises(FileExistsError):
        save_checkpoint(ck, policy, meta)
    save_checkpoint(ck, policy, {"step": 2}, overwrite=True)
    assert json.loads((ck / "vlmagent.json").read_text())["step"] == 2
    (ck / "value_head.safetensors").unlink()
    (ck / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json.*value_head.safetensors|value_head.*tokenizer"):
        load_policy(ck)
    save_checkpoint(ck, policy, {"step": 2}, overwrite=True)
    (ck / "vlmagent.json").unlink()
    with pytest.raises(CheckpointError, match="vlmagent.json"):
        load_policy(ck)
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "ckpt" / "000009")


def test_plain_hf_dir_gets_deterministic_fresh_value_head(tmp_path, policy):
    policy.model.save_pretrained(tmp_path / "hf")
    policy.processor.save_pretrained(tmp_path / "hf")
    a, b = load_policy(tmp_path / "hf"), load_policy(tmp_path / "hf")
    assert a.meta == {}
    for x, y in zip(a.value_head.parameters(), b.value_head.parameters(), strict=True):
        assert torch.equal(x, y)


def test_qwen2_vl_family(qwen_policy):
    pol = qwen_policy
    assert pol.family.name == "qwen2_vl" and isinstance(pol.processor, Qwen2VLImageOnlyProcessor)
    image = _image(5)
    ids, inputs = encode_prompt(pol, image, PROMPT)
    assert "image_grid_thw" in inputs and "mm_token_type_ids" in inputs
    with torch.no_grad():
        logits = pol.model(**inputs).logits[0, -1]
        gen = pol.model.generate(**inputs, max_new_tokens=3, do_sample=False)[0, len(ids) :].tolist()
        hid = forward_hidden(pol, [ids, ids[:5]], [gen, [1, 2]], model_inputs_for(pol, [_png(image), None]))
    lp = token_logprobs(hid.response[:1], pol.lm_head.weight, hid.response_ids[:1])
    assert torch.allclose(lp, torch.log_softmax(logits, -1)[gen[:1]], atol=1e-4)


def test_lora_checkpoint_round_trip(tmp_path, tiny_model_dir):
    pytest.importorskip("peft")
    from vlmagent.policy.lora import apply_lora

    pol = apply_lora(load_policy(tiny_model_dir), r=4, train_vision=False)
    trainable = [n for n, p in pol.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert not pol.lm_head.weight.requires_grad  # frozen head: the cheap fused backward
    for n, p in pol.model.named_parameters():
        if "lora_B" in n:
            p.data.normal_()  # make the adapter matter
    ids, _ = encode_prompt(pol, _image(6), PROMPT)
    vision = model_inputs_for(pol, [_image(6)])
    hid = forward_hidden(pol, [ids], [[3, 4, 5]], vision)
    evaluate_actions(pol, hid, [1], 1.0, 0.5)["action_logprobs"].sum().backward()
    assert all(p.grad is not None for n, p in pol.model.named_parameters() if p.requires_grad)
    ck = save_checkpoint(tmp_path / "ck", pol, {"step": 1})
    assert not (ck / "model.safetensors").exists() and (ck / "adapter_model.safetensors").exists()
    back = load_policy(ck)
    with torch.no_grad():
        a = forward_hidden(pol, [ids], [[3, 4, 5]], vision).response
        b = forward_hidden(back, [ids], [[3, 4, 5]], vision).response
    assert torch.allclose(a, b, atol=1e-5)
    (ck / "adapter_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):
        load_policy(ck)
