"""Cross-entropy through an output head, a chunk of rows at a time: the logits never exist whole.

``chunked_cross_entropy(hidden, weight, bias, targets)`` equals
``F.cross_entropy(hidden @ weight.T + bias, targets, ignore_index=-100)`` (the mean over the rows
whose target is not ignored), values and gradients, but holds only one chunk of ``rows x vocab``
logits at a time. For a causal LM head (SmolLM2: 49,152 outputs) at 8 x 128 tokens the plain
formulation keeps a 200 MB float32 logits tensor, its log-softmax and its gradient; here one
chunk of ``chunk_rows`` rows (``DEFAULT_CHUNK_BYTES`` of logits) exists at a time.

How: the loss is a scalar, so its gradient with respect to every row is known once the row's
softmax is: each chunk computes logits (one GEMM), the log-sum-exp and the target logit, turns
the logits in place into ``(softmax - onehot) / n`` and multiplies by the weight (one GEMM) to
get the rows' input gradient, which is stored (rows x hidden, small). ``backward`` only scales
it by the incoming gradient. Rows whose target is ignored (prompt tokens, padding) are skipped
altogether: no product is computed for them. The same two GEMMs as the plain path, run by
``gemm.linear`` (oneDNN or MKL per shape under ``MatmulBackend.AUTO``).

When the weight or bias requires grad (a trained head), their gradients are accumulated chunk
by chunk as well. Everything is float32 (a lower-precision ``hidden`` is upcast, like
transformers' loss upcasts the logits).
"""

from __future__ import annotations

from typing import Any

import torch

from lorakit.layers import gemm

IGNORE_INDEX = -100
DEFAULT_CHUNK_BYTES = 64 * 2**20
"""Logits held at once by default (float32): 64 MiB is 341 rows of a 49,152-word vocabulary."""
MIN_CHUNK_ROWS = 32
"""Fewer rows per chunk make the products memory-bound (the whole weight is read per chunk)."""


def default_chunk_rows(vocab: int) -> int:
    return max(MIN_CHUNK_ROWS, DEFAULT_CHUNK_BYTES // (4 * max(vocab, 1)))


class _ChunkedCrossEntropyFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk_rows: int,
        grad_enabled: bool,
    ) -> torch.Tensor:
        # needs_input_grad says True under no_grad too: only a graph-building call computes gradients.
        need_h, need_w, need_b = (grad_enabled and need for need in ctx.needs_input_grad[:3])
        backend = gemm.get_matmul_backend()
        keep = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        n = keep.numel()
        h = hidden.index_select(0, keep).float() if n < targets.numel() else hidden.float()
        t = targets.index_select(0, keep) if n < targets.numel() else targets
        w = weight.float()
        b = None if bias is None else bias.float()
        grad_h = torch.empty_like(h) if need_h else None
        grad_w = torch.zeros_like(w) if need_w else None
        grad_b = torch.zeros_like(b) if need_b and b is not None else None
        total = torch.zeros((), dtype=torch.float64, device=hidden.device)
        for start in range(0, n, chunk_rows):
            rows = slice(start, min(start + chunk_rows, n))
            logits = gemm.linear(h[rows], w, b, backend)
            tc = t[rows].unsqueeze(1)
            picked = logits.gather(1, tc).squeeze(1)
            top = logits.amax(1, keepdim=True)
            probs = logits.sub_(top).exp_()  # in place: exp(logits - max)
            norm = probs.sum(1)
            total += (top.squeeze(1) + norm.log() - picked).sum(dtype=torch.float64)
            if not (need_h or need_w or need_b):
                continue
            # (softmax - onehot) / n, in place: the gradient of the mean loss w.r.t. the logits.
            probs.mul_((1.0 / (norm * n)).unsqueeze(1))
            probs.scatter_add_(1, tc, torch.full_like(picked, -1.0 / n).unsqueeze(1))
            if need_h:
                grad_h[rows] = gemm.mm(probs, w, backend)
            if need_w:
                grad_w += gemm.mm(probs.t(), h[rows], backend)
            if grad_b is not None:
                grad_b += probs.sum(0)
        loss = (total / n).to(torch.float32) if n else torch.full((), float("nan"), device=hidden.device)
        ctx.save_for_backward(grad_h, grad_w, grad_b, keep)
        ctx.meta = (hidden.shape, hidden.dtype, n < targets.numel(), weight.dtype)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w, grad_b, keep = ctx.saved_tensors
        shape, dtype, subset, w_dtype = ctx.meta
        grad_hidden = None
        if grad_h is not None:
            scaled = grad_h * grad
            if subset:  # ignored rows: exactly zero
                scaled = scaled.new_zeros(shape).index_copy_(0, keep, scaled)
            grad_hidden = scaled.to(dtype)
        grad_weight = None if grad_w is None else (grad_w * grad).to(w_dtype)
        grad_bias = None if grad_b is None else (grad_b * grad).to(w_dtype)
        return grad_hidden, grad_weight, grad_bias, None, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight.T + bias`` (rows x vocab) against ``targets``
    (rows; ``-100`` = ignored) without materialising the logits; NaN when every row is ignored.

    ``hidden``: (rows, features); ``weight``: (vocab, features). ``chunk_rows``: rows per chunk
    (default: ``DEFAULT_CHUNK_BYTES`` of float32 logits)."""
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(
            f"hidden must be (rows, features) and targets (rows,), got {tuple(hidden.shape)} "
            f"and {tuple(targets.shape)}"
        )
    rows = chunk_rows or default_chunk_rows(weight.shape[0])
    if rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return _ChunkedCrossEntropyFn.apply(hidden, weight, bias, targets, rows, torch.is_grad_enabled())
