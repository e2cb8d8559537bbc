"""Fused log-probabilities (and entropies) of response tokens.

`token_logprobs(hidden, weight, targets, temperature)` gives log softmax(hidden @ weight.T / T)[target]
for every response token without ever building a [tokens x vocab] tensor: the logits are made one tile
([token chunk x vocab block], 64 MiB fp32 at the defaults) at a time, reduced with an online
log-sum-exp (running max and sum, as in flash attention), and dropped. Memory is O(tile), whatever the
batch or vocab size.

Why backward is cheap: the upstream gradient of each token's log-prob is one
scalar g_n, and d logp_n / d h_n = (W[y_n] - p_n @ W) / T does not depend on it. So when the LM head is
frozen (the LoRA case) the forward pass accumulates p_n @ W online beside the log-sum-exp and saves that
[tokens x hidden] gradient; backward is one multiply. That is two matmuls in all, as many as naive
forward + backward. When the head is trained, d logp / d W = sum_n g_n (e_y - p_n) h_n^T / T needs g_n
inside a [vocab x hidden] sum, so backward recomputes each tile's probabilities from the saved
log-sum-exp and forms both gradients (1 matmul forward + 3 backward, naive needs 3). Backward walks the
vocab in blocks too, so each block of the weight gradient is written by one matmul with the whole token
chunk as its inner dimension, not read and rewritten once per token chunk.

Entropy (`with_entropy`, for an entropy bonus) has a gradient too: with z the tempered logits and
zbar = sum_v p_v z_v, dH/dz_v = -p_v (z_v - zbar). Its upstream gradient e_n joins g_n in the same
recomputing backward, which then scales each tile by r = p (g + e (z - zbar)) instead of g p: one
more tile-sized buffer, still no [tokens x vocab] tensor.

Numerics: the logits matmul runs in the weight's dtype (bf16 stays bf16, as naive), everything after it
(max, exp, sums, log-sum-exp, the accumulated p @ W) is fp32; the target's logit is taken in fp32 from
the inputs. Log-probs and entropies come out fp32, gradients in the inputs' dtypes.
"""

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
        self.f32_2: Tensor | None = None  # a second fp32 tile, only for the entropy gradient

    def second(self, c: int, vb: int) -> Tensor:
        if self.f32_2 is None:
            self.f32_2 = torch.empty_like(self.f32)
        return self.f32_2[: c * vb].view(c, vb)

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
        # E_p[z] per token (lse - entropy), what the entropy's gradient needs
        ctx.save_for_backward(hidden, weight, targets, lse_all, dh, None if ent is None else lse_all - ent)
        if ent is not None:
            return logp, ent
        return logp

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_logp, g_ent=None):
        hidden, weight, targets, lse_all, dh, zbar_all = ctx.saved_tensors
        if zbar_all is not None:
            return _FusedLogprob.backward_with_entropy(ctx, g_logp, g_ent)
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

    @staticmethod
    def backward_with_entropy(ctx, g_logp, g_ent):
        """The recomputing backward with the entropy's gradient: d loss / d z = g e_y - p (g + e (z - zbar))."""
        hidden, weight, targets, lse_all, _, zbar_all = ctx.saved_tensors
        inv_t, chunk, block = ctx.inv_t, ctx.chunk, ctx.block
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1] and ctx.grad_w
        f32, n, vocab = torch.float32, hidden.shape[0], weight.shape[0]
        if not (need_h or need_w):
            return None, None, None, None, None, None, None, None, None
        g = g_logp.float() if g_logp is not None else torch.zeros(n, dtype=f32, device=hidden.device)
        e = g_ent.float() if g_ent is not None else torch.zeros(n, dtype=f32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight) if need_w else None
        tiles = _Tiles(min(chunk, max(n, 1)), min(block, vocab), weight, inv_t)
        for s in range(0, n, chunk):
            h, y = hidden[s : s + chunk], targets[s : s + chunk]
            lse, zbar = lse_all[s : s + chunk, None], zbar_all[s : s + chunk, None]
            gc, ec = g[s : s + chunk, None], e[s : s + chunk, None]
            h_s = tiles.scaled(h)
            h_t = (h.float() * inv_t).to(weight.dtype)  # d z / d W row = h / T
            acc = torch.zeros(h.shape, dtype=f32, device=h.device) if need_h else None  # r @ W
            for v in range(0, vocab, block):
                w = weight[v : v + block]
                z = tiles.logits(h_s, w)
                p = torch.sub(z, lse, out=tiles.second(*z.shape)).exp_()
                r = tiles.matmul_operand(z.sub_(zbar).mul_(ec).add_(gc).mul_(p))  # p (g + e (z - zbar))
                if acc is not None:
                    acc.addmm_(r, w) if r.dtype == f32 else acc.add_(r @ w)
                if grad_w is not None:
                    grad_w[v : v + block].addmm_(r.t(), h_t, alpha=-1)
            if grad_h is not None:
                grad_h[s : s + chunk] = ((weight[y].float() * gc - acc) * inv_t).to(hidden.dtype)
            if grad_w is not None:
                grad_w.index_add_(0, y, (h.float() * (gc * inv_t)).to(weight.dtype))  # one-hot part: g h / T
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
    tempered distribution (fp32, differentiable: an entropy bonus reaches the weights).
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
    # the frozen head's forward-time gradient covers the log-prob only; entropy takes the recomputing backward
    grad_h_now = grad_on and hidden.requires_grad and not grad_w and not with_entropy
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
