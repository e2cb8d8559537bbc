"""Fused log-probabilities of response tokens, and the CoT-scaled action log-prob.

`token_logprobs(hidden, weight, targets, temperature)` gives log softmax(hidden @ weight.T / T)[target]
for every response token without ever building a [tokens x vocab] tensor: the logits are made one tile
([token chunk x vocab block], 64 MiB fp32 at the defaults) at a time, reduced with an online
log-sum-exp (running max and sum, as in flash attention), and dropped. Memory is O(tile), whatever the
batch or vocab size.

Why backward is cheap (the hint in issue 3): the upstream gradient of each token's log-prob is one
scalar g_n, and d logp_n / d h_n = (W[y_n] - p_n @ W) / T does not depend on it. So when the LM head is
frozen (the LoRA case) the forward pass accumulates p_n @ W online beside the log-sum-exp and saves that
[tokens x hidden] gradient; backward is one multiply. That is two matmuls in all, as many as naive
forward + backward. When the head is trained, d logp / d W = sum_n g_n (e_y - p_n) h_n^T / T needs g_n
inside a [vocab x hidden] sum, so backward recomputes each tile's probabilities from the saved
log-sum-exp and forms both gradients (1 matmul forward + 3 backward, naive needs 3). Backward walks the
vocab in blocks too, so each block of the weight gradient is written by one matmul with the whole token
chunk as its inner dimension, not read and rewritten once per token chunk.

Numerics: the logits matmul runs in the weight's dtype (bf16 stays bf16, as naive), everything after it
(max, exp, sums, log-sum-exp, the accumulated p @ W) is fp32; the target's logit is taken in fp32 from
the inputs. Log-probs and entropies come out fp32, gradients in the inputs' dtypes.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

TOKEN_CHUNK = 4096  # tokens per outer step
VOCAB_BLOCK = 4096  # vocab rows per inner step: a 4096 x 4096 fp32 tile is 64 MiB


class _Tiles:
    """Reusable tile buffers (fresh allocations per tile would page-fault every time) and the tile logits."""

    def __init__(self, chunk: int, block: int, weight: Tensor, inv_t: float):
        self.inv_t, self.low = inv_t, weight.dtype != torch.float32
        self.f32 = torch.empty(chunk * block, dtype=torch.float32, device=weight.device)
        self.lp = torch.empty(chunk * block, dtype=weight.dtype, device=weight.device) if self.low else None

    def scaled(self, h: Tensor) -> Tensor:
        # fp32: fold 1/T into the [chunk x hidden] operand instead of a pass over the tile
        return h * self.inv_t if not self.low and self.inv_t != 1.0 else h

    def logits(self, h_s: Tensor, w: Tensor) -> Tensor:
        """fp32 tempered logits [c, vb] of one tile, in the reused buffer."""
        c, vb = h_s.shape[0], w.shape[0]
        z = self.f32[: c * vb].view(c, vb)
        if not self.low:
            return torch.mm(h_s, w.t(), out=z)
        zl = self.lp[: c * vb].view(c, vb)
        z.copy_(torch.mm(h_s, w.t(), out=zl))
        return z.mul_(self.inv_t) if self.inv_t != 1.0 else z

    def matmul_operand(self, p: Tensor) -> Tensor:
        """p as the weight's dtype for the next matmul (bf16 copy into the reused buffer)."""
        return p if not self.low else self.lp[: p.numel()].view(p.shape).copy_(p)


class _FusedLogprob(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, inv_t, chunk, block, want_entropy, grad_h_now, grad_w):
        n, vocab = hidden.shape[0], weight.shape[0]
        dev, f32 = hidden.device, torch.float32
        logp = torch.empty(n, dtype=f32, device=dev)
        lse_all = torch.empty(n, dtype=f32, device=dev)
        ent = torch.empty(n, dtype=f32, device=dev) if want_entropy else None
        # frozen head: d logp / d hidden formed now, saved fp32 ([N, H]: as small as the input)
        dh = torch.empty(n, hidden.shape[1], dtype=f32, device=dev) if grad_h_now else None
        tiles = _Tiles(min(chunk, max(n, 1)), min(block, vocab), weight, inv_t)
        for s in range(0, n, chunk):
            h, y = hidden[s : s + chunk], targets[s : s + chunk]
            h_s = tiles.scaled(h)
            c = h.shape[0]
            m = torch.full((c,), float("-inf"), dtype=f32, device=dev)  # running max of the logits
            tot = torch.zeros(c, dtype=f32, device=dev)  # running sum of exp(z - m)
            zbar = torch.zeros(c, dtype=f32, device=dev) if ent is not None else None  # sum exp(z - m) z
            acc = torch.zeros(c, h.shape[1], dtype=f32, device=dev) if dh is not None else None  # exp(z-m) W
            for v in range(0, vocab, block):
                w = weight[v : v + block]
                z = tiles.logits(h_s, w)
                m_new = torch.maximum(m, z.amax(dim=1))
                rescale = torch.exp(m - m_new)  # 0 at the first block (m = -inf)
                u = z.sub_(m_new[:, None]).exp_()
                u_sum = u.sum(dim=1)
                tot.mul_(rescale).add_(u_sum)
                if zbar is not None:  # sum u z = sum u log u + m sum u
                    zbar.mul_(rescale).add_(m_new * u_sum - torch.special.entr(u).sum(dim=1))
                if acc is not None:
                    um = tiles.matmul_operand(u)
                    acc.mul_(rescale[:, None])
                    acc.addmm_(um, w) if um.dtype == f32 else acc.add_(um @ w)
                m = m_new
            lse = m + tot.log()
            z_y = (h.float() * weight[y].float()).sum(dim=1) * inv_t  # target logit, fp32 from the inputs
            logp[s : s + chunk] = z_y - lse
            lse_all[s : s + chunk] = lse
            if ent is not None:
                ent[s : s + chunk] = lse - zbar / tot
            if dh is not None:
                dh[s : s + chunk] = (weight[y].float() - acc / tot[:, None]).mul_(inv_t)
        ctx.inv_t, ctx.chunk, ctx.block, ctx.grad_w = inv_t, chunk, block, grad_w
        ctx.save_for_backward(hidden, weight, targets, lse_all, dh)
        if ent is not None:
            ctx.mark_non_differentiable(ent)
            return logp, ent
        return logp

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_logp, *unused):
        hidden, weight, targets, lse_all, dh = ctx.saved_tensors
        inv_t, chunk, block = ctx.inv_t, ctx.chunk, ctx.block
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and ctx.grad_w
        f32, n, vocab = torch.float32, hidden.shape[0], weight.shape[0]
        g = g_logp.float()
        grad_h = grad_w = None
        if need_h and dh is not None:  # frozen head: the gradient was formed in forward
            grad_h = (dh * g[:, None]).to(hidden.dtype)
        h_now = need_h and grad_h is None
        if not (need_w or h_now):
            return grad_h, None, None, None, None, None, None, None, None
        grad_h = torch.empty_like(hidden) if h_now else grad_h
        grad_w = torch.zeros_like(weight) if need_w else None
        tiles = _Tiles(min(chunk, max(n, 1)), min(block, vocab), weight, inv_t)
        for s in range(0, n, chunk):
            h, y, lse = hidden[s : s + chunk], targets[s : s + chunk], lse_all[s : s + chunk, None]
            gs = g[s : s + chunk, None] * inv_t  # d loss / d z_n = gs_n (e_y - p_n)
            h_s = tiles.scaled(h)
            hg = (h.float() * gs).to(weight.dtype)
            acc = torch.zeros(h.shape, dtype=f32, device=h.device) if h_now else None  # p @ W
            for v in range(0, vocab, block):
                w = weight[v : v + block]
                p = tiles.logits(h_s, w).sub_(lse).exp_()  # softmax, from the saved log-sum-exp
                pm = tiles.matmul_operand(p)
                if acc is not None:
                    acc.addmm_(pm, w) if pm.dtype == f32 else acc.add_(pm @ w)
                if grad_w is not None:
                    grad_w[v : v + block].addmm_(pm.t(), hg, alpha=-1)  # dense part: - p^T (gs h)
            if acc is not None:
                grad_h[s : s + chunk] = ((weight[y].float() - acc) * gs).to(hidden.dtype)
            if grad_w is not None:
                grad_w.index_add_(0, y, hg)  # one-hot part: + gs h at each target's row
        return grad_h, grad_w, None, None, None, None, None, None, None


def token_logprobs(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    temperature: float = 1.0,
    chunk_size: int = TOKEN_CHUNK,
    vocab_block: int = VOCAB_BLOCK,
    with_entropy: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Log-prob (fp32, [N]) of each target token under softmax(hidden @ weight.T / temperature).

    hidden: [N, H] final hidden states at the positions that predict each target (packed, no padding);
    weight: [V, H] the LM head (no bias); targets: [N] token ids. Differentiable w.r.t. hidden and
    weight; a weight with requires_grad=False is the frozen-head mode (cheapest backward). Logits are
    made [chunk_size x vocab_block] at a time. with_entropy also returns each token's entropy of the
    tempered distribution (fp32, no gradient: a diagnostic, not a loss term).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden [N, H] and weight [V, H] expected, got {tuple(hidden.shape)}, {tuple(weight.shape)}"
        )
    if targets.shape != (hidden.shape[0],):
        raise ValueError(f"targets must be [{hidden.shape[0]}], got {tuple(targets.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1 or vocab_block < 1:
        raise ValueError(f"chunk_size and vocab_block must be >= 1, got {chunk_size}, {vocab_block}")
    grad_on = torch.is_grad_enabled()
    grad_w = grad_on and weight.requires_grad
    grad_h_now = grad_on and hidden.requires_grad and not grad_w
    if weight.dtype != hidden.dtype:
        hidden = hidden.to(weight.dtype)
    return _FusedLogprob.apply(
        hidden,
        weight,
        targets.long(),
        1.0 / temperature,
        chunk_size,
        vocab_block,
        with_entropy,
        grad_h_now,
        grad_w,
    )


def naive_token_logprobs(hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """Reference: full logits, log_softmax, gather (what the fused version must equal)."""
    logits = hidden @ weight.t()
    logits = logits.float() if logits.element_size() < 4 else logits  # bf16/fp16 -> fp32; fp64 stays
    logits = logits / temperature
    return torch.log_softmax(logits, dim=-1).gather(1, targets.long()[:, None]).squeeze(1)


def _as_lengths(lengths: Sequence[int] | Tensor, device: torch.device) -> Tensor:
    return torch.as_tensor(lengths, dtype=torch.long, device=device)


def cot_weights(
    lengths: Sequence[int] | Tensor, action_start: Sequence[int] | Tensor, lambda_cot: float, device=None
) -> Tensor:
    """Per-token weights of a packed ragged batch: lambda before each response's action start, 1 after."""
    lens = _as_lengths(lengths, device)
    starts = _as_lengths(action_start, device)
    offsets = torch.cumsum(lens, 0) - lens
    seq = torch.repeat_interleave(torch.arange(len(lens), device=lens.device), lens)
    pos = torch.arange(int(lens.sum()), device=lens.device) - offsets[seq]
    return torch.where(pos < starts[seq], lambda_cot, 1.0).float()


def action_logprob(
    token_logprobs: Tensor | Sequence[Tensor],
    action_start: Sequence[int] | Tensor,
    lambda_cot: float,
    lengths: Sequence[int] | Tensor | None = None,
) -> Tensor:
    """log pi(a|s) = lambda * sum(CoT token log-probs) + sum(action token log-probs), one per response.

    token_logprobs: a list of per-response 1-D tensors, or one packed 1-D tensor with `lengths`.
    action_start[i]: index of response i's first action token (0 = no CoT part: all tokens weigh 1;
    a value >= the length means no action part was found and every token is CoT).
    """
    if not isinstance(token_logprobs, Tensor):
        lengths = [len(t) for t in token_logprobs]
        token_logprobs = torch.cat(list(token_logprobs)) if lengths else torch.zeros(0)
    elif lengths is None:
        raise ValueError("a packed token_logprobs tensor needs `lengths`")
    lens = _as_lengths(lengths, token_logprobs.device)
    if int(lens.sum()) != token_logprobs.shape[0]:
        raise ValueError(f"lengths sum to {int(lens.sum())} but there are {token_logprobs.shape[0]} tokens")
    w = cot_weights(lens, action_start, lambda_cot, device=token_logprobs.device)
    seq = torch.repeat_interleave(torch.arange(len(lens), device=lens.device), lens)
    dtype = torch.promote_types(token_logprobs.dtype, torch.float32)  # fp32, or fp64 for a reference
    out = torch.zeros(len(lens), dtype=dtype, device=token_logprobs.device)
    return out.index_add(0, seq, token_logprobs.to(dtype) * w.to(dtype))
