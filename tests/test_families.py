"""Every family in the Family table, end to end on a tiny random model built offline from the family's own
config and processor classes (vlmagent.policy.tiny.build_tiny): collect -> score -> update -> eval
through the CLI, the sampler's and the trainer's log-probs per token, image tokens vs image features, the
CoT/action split, LoRA's targets and the vision freeze."""

import inspect
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vlmagent.cli import app
from vlmagent.envs import make_env
from vlmagent.policy import FAMILIES, encode_prompt, forward_hidden, load_policy, model_inputs_for
from vlmagent.policy.logprob import token_logprobs
from vlmagent.policy.tiny import build_tiny
from vlmagent.prompts import action_char_start, action_token_start, oracle_response
from vlmagent.rollout import token_char_offsets
from vlmagent.rundir import ckpt_dir, eval_dir, rollouts_dir, scored_dir
from vlmagent.shards import SCORED_SCHEMA, read_manifest, read_stage

RUN_TOML = """\
env = "blackjack"
episodes = 4
episodes_per_shard = 4
num_envs = 4
max_new_tokens = 8
temperature = 1.0
image_size = 64
update_epochs = 1
minibatch_size = 4
grad_accum = 1
learning_rate = 1e-3
max_grad_norm = 1.0
eval_episodes = 4
train_vision = false
"""


def invoke(*args) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return res.output


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_model(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, build_tiny(request.param, tmp_path_factory.mktemp(request.param) / "model")


@pytest.fixture(scope="module")
def chain(family_model, tmp_path_factory) -> Path:
    """One RL iteration and an eval of its checkpoint, stage by stage through the CLI, on a run dir."""
    family, model = family_model
    run = tmp_path_factory.mktemp(f"{family}-run")
    (run / "run.toml").write_text(RUN_TOML + f'policy = "{model}"\n')
    for stage in ("collect", "score", "update", "eval"):
        invoke(stage, "--run", run)
    return run


def image_features(policy, vision: dict[str, torch.Tensor]) -> torch.Tensor:
    """[image tokens, hidden]: what the model puts in place of the image tokens, each image's rows in turn."""
    backbone = policy.family.backbone(policy.model)
    takes = inspect.signature(backbone.get_image_features).parameters
    out = backbone.get_image_features(**{k: v for k, v in vision.items() if k in takes})
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    feats = feats if isinstance(feats, list | tuple) else [feats]
    return torch.cat([f.reshape(-1, f.shape[-1]) for f in feats])


def test_family_runs_the_whole_chain(family_model, chain):
    family, _ = family_model
    rollouts = read_stage(rollouts_dir(chain, 0))
    assert rollouts["episode_id"].n_unique() == 4
    policy = load_policy(ckpt_dir(chain, 0))
    assert policy.family is FAMILIES[family]
    image_token = policy.family.image_token_id(policy.model)
    # the image-token count of each stored prompt is the number of features its rebuilt pixels give
    with torch.no_grad():
        for row in rollouts.head(3).iter_rows(named=True):
            n_features = image_features(policy, model_inputs_for(policy, [row["image"]])).shape[0]
            assert row["prompt_token_ids"].count(image_token) == n_features > 0
            assert image_token not in row["response_token_ids"]  # the sampler never writes one
    # the sampler's log-prob of every response token is the trainer's (score measures every token)
    manifest = read_manifest(scored_dir(chain, 0))
    assert manifest["rows"] == rollouts.height
    assert manifest["logprob_gap_max"] < 1e-3
    # the action log-prob PPO trains is lambda * logp(CoT tokens) + logp(action tokens), split where collect said
    scored = read_stage(scored_dir(chain, 0), SCORED_SCHEMA)
    for row in scored.iter_rows(named=True):
        lp, start = row["behavior_logprobs"], row["action_token_start"]
        assert row["old_logprob"] == pytest.approx(0.5 * sum(lp[:start]) + sum(lp[start:]), abs=1e-2)
    # update: the language model moved, the frozen vision tower (train_vision = false) did not
    stats = json.loads((chain / "iter" / "000000" / "update.json").read_text())
    assert stats["optimizer_steps"] >= 1 and stats["steps"] == rollouts.height
    new = load_policy(ckpt_dir(chain, 1))
    old_vision = {id(p) for p in policy.vision_parameters()}
    old_params = dict(policy.model.named_parameters())
    moved = {n for n, p in new.model.named_parameters() if not torch.equal(p, old_params[n])}
    vision_names = {n for n, p in policy.model.named_parameters() if id(p) in old_vision}
    assert vision_names and not moved & vision_names
    assert not torch.equal(new.lm_head.weight, policy.lm_head.weight)
    summary = json.loads((eval_dir(chain, 1) / "summary.json").read_text())
    assert summary["episodes"] == 4


def test_family_cot_action_split_in_its_tokens(family_model):
    """The CoT/action boundary collect stores, found through the family's tokenizer on an oracle answer."""
    _, model = family_model
    tok = load_policy(model).tokenizer
    env = make_env("numberline", image_size=64)
    env.reset(seed=0)
    text = oracle_response("numberline", env.unwrapped, cot=True)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == text
    start = action_token_start(text, token_char_offsets(tok, ids))
    assert 0 < start < len(ids)
    cot, action = tok.decode(ids[:start]), tok.decode(ids[start:])
    assert len(cot) <= action_char_start(text) < len(cot) + len(tok.decode(ids[start : start + 1]))
    assert '"action"' not in cot and '"action"' in action


def _grad_names(policy, prompt: list[int], vision: dict) -> set[str]:
    """Parameters that get a non-zero gradient from the response log-prob of one forward."""
    policy.model.zero_grad(set_to_none=True)
    response = policy.tokenizer.encode('{"action": "stand"}', add_special_tokens=False)
    hidden = forward_hidden(policy, [prompt], [response], vision)
    token_logprobs(hidden.response, policy.lm_head.weight, hidden.response_ids).sum().backward()
    return {n for n, p in policy.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_family_freezes_its_vision_tower(family_model):
    """freeze_vision freezes every parameter only the image path uses, and nothing the text path uses."""
    from PIL import Image

    _, model = family_model
    policy = load_policy(model)
    image = Image.new("RGB", (64, 64), (200, 30, 60))
    with_image, _ = encode_prompt(policy, image, "Target: 3, Current: 1.")
    text_only = policy.tokenizer.encode("Target: 3, Current: 1.", add_special_tokens=False)
    image_path = _grad_names(policy, with_image, model_inputs_for(policy, [image]))
    text_path = _grad_names(policy, text_only, {})
    vision_ids = {id(p) for p in policy.vision_parameters()}
    vision = {n for n, p in policy.model.named_parameters() if id(p) in vision_ids}
    assert image_path - text_path, "the image reaches the model through some parameters"
    assert image_path - text_path <= vision
    assert not vision & text_path
    policy.freeze_vision()
    frozen = {n for n, p in policy.model.named_parameters() if not p.requires_grad}
    assert frozen == vision


def test_family_lora_targets_its_language_model(family_model):
    """Adapters on every q/k/v/o/gate/up/down of the language model and nowhere else; with train_vision
    the family's vision modules train in full beside them."""
    pytest.importorskip("peft")
    from vlmagent.policy.lora import DEFAULT_TARGETS, apply_lora

    _, model = family_model
    policy = load_policy(model)
    backbone = policy.family.backbone(policy.model)
    language_model = policy.family.language_model
    targets = {
        f"{language_model}.{n}"
        for n, m in getattr(backbone, language_model).named_modules()
        if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in DEFAULT_TARGETS
    }
    assert len(targets) == 7 * policy.model.config.get_text_config().num_hidden_layers
    vision = [n for n in policy.family.vision_modules if isinstance(getattr(backbone, n), torch.nn.Module)]
    policy = apply_lora(policy, r=2, train_vision=True)
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    adapted = {
        n.split(".lora_A")[0].removeprefix("base_model.model.model.") for n in trainable if ".lora_A" in n
    }
    assert adapted == targets
    assert all(".lora_" in n or ".modules_to_save." in n for n in trainable)
    assert {v for v in vision if any(f"{v}.modules_to_save." in n for n in trainable)} == set(vision)


def test_soft_capped_logits_are_refused(tmp_path):
    """PaliGemma 2 (Gemma 2 text) caps its logits; the fused log-prob does not, so its log-probs would
    not be the sampler's: refused at load, not trained wrong."""
    model = build_tiny("paligemma", tmp_path / "pg2")
    config = json.loads((model / "config.json").read_text())
    config["text_config"]["final_logit_softcapping"] = 30.0
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        load_policy(model)
