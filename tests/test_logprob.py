"""Fused log-prob == naive float64 reference (values, entropies, gradients).

Tolerances: fp32 inputs, log-probs within 1e-4 absolute (tempered logits up to ~30) and gradients within
1e-5 of the reference's largest entry. bf16 inputs (reference on the same bf16-rounded values): log-probs
within 2^-8 x the largest |tempered logit| (bf16 logits carry 8 bits; the naive bf16 computation is no
closer) and gradients within 3% of the reference's largest entry.
"""

import pytest
import torch

from vlmagent.policy.logprob import naive_token_logprobs, token_logprobs
from vlmagent.ppo import action_logprob


def _inputs(n, h, v, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen).to(dtype)
    weight = (torch.randn(v, h, generator=gen) * h**-0.5).to(dtype)
    targets = torch.randint(0, v, (n,), generator=gen)
    upstream = torch.randn(n, generator=gen, dtype=torch.float64)
    return hidden, weight, targets, upstream


def _reference(hidden, weight, targets, upstream, temperature, frozen):
    h = hidden.double().requires_grad_()
    w = weight.double().requires_grad_(not frozen)
    logp = naive_token_logprobs(h, w, targets, temperature)
    (logp * upstream).sum().backward()
    probs = torch.softmax((h.detach() @ w.detach().t()) / temperature, -1)
    entropy = -torch.special.xlogy(probs, probs).sum(-1)
    return logp.detach(), entropy, h.grad, None if frozen else w.grad


def _fused(hidden, weight, targets, upstream, temperature, frozen, chunk, block):
    h = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_(not frozen)
    logp = token_logprobs(h, w, targets, temperature, chunk_size=chunk, vocab_block=block)
    (logp * upstream.float()).sum().backward()
    with torch.no_grad():
        _, ent = token_logprobs(
            h, w, targets, temperature, chunk_size=chunk, vocab_block=block, with_entropy=True
        )
    return logp.detach(), ent, h.grad, w.grad


def _rel(a, b):
    return ((a.double() - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize(
    "n,h,v,temperature,chunk,block",
    [
        (1, 8, 7, 1.0, 4096, 4096),
        (37, 16, 101, 1.0, 8, 30),  # neither chunk nor block divides its dimension
        (200, 32, 1000, 0.2, 64, 1000),
        (130, 64, 5003, 0.7, 512, 512),  # one token chunk bigger than n
        (96, 48, 32000, 0.2, 32, 4096),
    ],
)
@pytest.mark.parametrize("frozen", [False, True])
def test_fused_equals_float64_reference_fp32(n, h, v, temperature, chunk, block, frozen):
    args = _inputs(n, h, v)
    ref_lp, ref_ent, ref_gh, ref_gw = _reference(*args, temperature, frozen)
    lp, ent, gh, gw = _fused(*args, temperature, frozen, chunk, block)
    assert lp.dtype == torch.float32 and ent.dtype == torch.float32
    assert (lp.double() - ref_lp).abs().max() < 1e-4
    assert (ent.double() - ref_ent).abs().max() < 1e-4
    assert _rel(gh, ref_gh) < 1e-5
    if frozen:
        assert gw is None
    else:
        assert _rel(gw, ref_gw) < 1e-5


@pytest.mark.parametrize("n,h,v,temperature", [(300, 64, 5000, 0.2), (257, 32, 8192, 1.0)])
@pytest.mark.parametrize("frozen", [False, True])
def test_fused_bf16_within_stated_tolerance(n, h, v, temperature, frozen):
    args = _inputs(n, h, v, dtype=torch.bfloat16)
    ref_lp, _, ref_gh, ref_gw = _reference(*args, temperature, frozen)
    lp, _, gh, gw = _fused(*args, temperature, frozen, chunk=96, block=1000)
    zmax = ((args[0].double() @ args[1].double().t()) / temperature).abs().max().item()
    assert lp.dtype == torch.float32 and gh.dtype == torch.bfloat16
    assert (lp.double() - ref_lp).abs().max() < 2**-8 * zmax
    assert _rel(gh, ref_gh) < 0.03
    if not frozen:
        assert gw.dtype == torch.bfloat16 and _rel(gw, ref_gw) < 0.03


@pytest.mark.parametrize(
    "n,h,v,temperature,chunk,block",
    [(1, 8, 7, 1.0, 4096, 4096), (37, 16, 101, 0.7, 8, 30), (130, 64, 5003, 0.2, 64, 512)],
)
@pytest.mark.parametrize("frozen", [False, True])
def test_entropy_gradient_equals_autograd_on_plain_log_softmax(n, h, v, temperature, chunk, block, frozen):
    """An entropy bonus reaches the weights: the gradient of sum(g logp + e H) matches autograd's."""
    hidden, weight, targets, upstream = _inputs(n, h, v)
    ent_upstream = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hr = hidden.double().requires_grad_()
    wr = weight.double().requires_grad_(not frozen)
    logits = torch.log_softmax((hr @ wr.t()) / temperature, dim=-1)
    ref_lp = logits.gather(1, targets[:, None]).squeeze(1)
    ref_ent = -(logits.exp() * logits).sum(-1)
    (ref_lp * upstream + ref_ent * ent_upstream).sum().backward()
    hf = hidden.clone().requires_grad_()
    wf = weight.clone().requires_grad_(not frozen)
    lp, ent = token_logprobs(
        hf, wf, targets, temperature, chunk_size=chunk, vocab_block=block, with_entropy=True
    )
    assert ent.requires_grad
    (lp * upstream.float() + ent * ent_upstream.float()).sum().backward()
    assert (ent.detach().double() - ref_ent.detach()).abs().max() < 1e-4
    assert _rel(hf.grad, hr.grad) < 1e-5
    if frozen:
        assert wf.grad is None
    else:
        assert _rel(wf.grad, wr.grad) < 1e-5
    # the entropy alone (no log-prob term in the loss) has a gradient too
    hf.grad = None
    _, ent = token_logprobs(
        hf, wf, targets, temperature, chunk_size=chunk, vocab_block=block, with_entropy=True
    )
    ent.sum().backward()
    assert hf.grad.abs().max() > 0


def test_ragged_batch_equals_per_sequence():
    hidden, weight, targets, _ = _inputs(60, 16, 300)
    lengths = [5, 0, 31, 24]
    packed = token_logprobs(hidden, weight, targets, 0.5, chunk_size=16, vocab_block=64)
    pieces, s = [], 0
    for n in lengths:
        pieces.append(
            naive_token_logprobs(hidden[s : s + n].double(), weight.double(), targets[s : s + n], 0.5)
        )
        s += n
    assert torch.allclose(packed.double(), torch.cat(pieces), atol=1e-5)
    starts = [2, 0, 40, 10]
    got = action_logprob(packed, starts, 0.3, lengths=lengths)
    want = action_logprob(pieces, starts, 0.3)
    assert got.shape == (4,) and got[1] == 0
    assert torch.allclose(got.double(), want, atol=1e-4)


def test_no_grad_and_weight_only_grad():
    hidden, weight, targets, upstream = _inputs(50, 16, 200)
    with torch.no_grad():
        lp = token_logprobs(hidden.requires_grad_(), weight, targets, 0.2)
    assert not lp.requires_grad
    h = hidden.detach()
    w = weight.clone().requires_grad_()
    (token_logprobs(h, w, targets, 0.2, chunk_size=7, vocab_block=33) * upstream.float()).sum().backward()
    _, _, _, ref_gw = _reference(h, weight, targets, upstream, 0.2, frozen=False)
    assert _rel(w.grad, ref_gw) < 1e-5


def test_empty_and_bad_inputs():
    w = torch.randn(10, 4)
    assert token_logprobs(torch.zeros(0, 4), w, torch.zeros(0, dtype=torch.long)).shape == (0,)
    with pytest.raises(ValueError):
        token_logprobs(torch.zeros(3, 5), w, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        token_logprobs(torch.zeros(3, 4), w, torch.zeros(3, dtype=torch.long), temperature=0.0)
    with pytest.raises(ValueError):
        token_logprobs(torch.zeros(3, 4), w, torch.zeros(3, dtype=torch.long), vocab_block=0)
