"""The fast path of ``LoraLinear``: base + low-rank update as one autograd node.

Computes exactly ``base_layer(x) + scaling * B(A(h))`` with ``h = dropout(x)`` (``h is x`` when
the dropout is an identity) and the gradients autograd would give, with less work:

* forward: the low-rank update is accumulated into the base output in place
  (``out.addmm_(x A^T, B^T, alpha=scaling)``) instead of materialising ``B(A(h))``,
  ``* scaling`` and ``+`` as three full-size tensors;
* backward: ``g B`` (N x r) is computed once and reused for the gradient of A and of the input,
  and the input gradient of the base and of the update share one buffer
  (``(g W).addmm_(g B s, A)``), so no full-size temporary and no extra add exist;
* only ``h`` and the skinny ``x A^T`` (N x r) are saved; the frozen weight's gradient is never
  computed (it is when the weight does require grad, so the path is correct in every case);
* with dropout (an ``nn.Dropout`` in training, on CPU) the node draws the mask itself, exactly as
  torch's CPU dropout does (same random stream, same arithmetic), and keeps ``x`` (shared by
  every layer reading it) and a bool mask instead of the float mask and the dropped copy ``h``
  (about 2.25 fewer full-size tensors per layer); ``h`` is recomputed in backward;
* gradients nobody asked for (e.g. the input of the first adapted layer, which comes from frozen
  embeddings) are skipped via ``ctx.needs_input_grad``;
* every product goes through ``gemm.linear`` / ``gemm.mm``, which on a CPU computes large float32
  products with whichever of oneDNN's and MKL's GEMM measured faster for the shape
  (``MatmulBackend.AUTO``; oneDNN is 2.2-2.4x faster on the benchmark machine, same float32
  arithmetic, different summation order); ``MatmulBackend.TORCH`` keeps torch's own,
  bit-identical to ``nn.Linear``. The backward uses the backend its forward ran under.

Nothing is cached between calls. When base and adapter dtypes differ (e.g. a bf16 base with
float32 adapters) the update is computed in the adapter dtype and cast, like the plain formula.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lorakit.layers import gemm


def _base_weight_oi(weight: torch.Tensor, fan_in_fan_out: bool) -> torch.Tensor:
    """The base weight as (out, in), a view: Conv1D stores it transposed."""
    return weight.t() if fan_in_fan_out else weight


def _fused_forward(
    x2: torch.Tensor,
    h2: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
    fan_in_fan_out: bool,
    backend: gemm.MatmulBackend,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x W^T + bias + scaling * (h A^T) B^T, h A^T) for 2-D x and h."""
    out = gemm.linear(x2, _base_weight_oi(weight, fan_in_fan_out), bias, backend)
    xa = gemm.linear(h2, lora_a, backend=backend)
    if out.dtype == lora_b.dtype:
        out.addmm_(xa, lora_b.t(), alpha=scaling)
    else:
        out += (torch.mm(xa, lora_b.t()) * scaling).to(out.dtype)
    return out, xa


def _dropout_scale(keep: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    """The dropout multiplier (0 or 1/(1-p)) from the kept-element mask, as torch computes it."""
    return keep.to(dtype).div_(1 - p)


class _LoraLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        h: torch.Tensor | None,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scaling: float,
        fan_in_fan_out: bool,
        dropout_p: float,
    ) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        keep = None
        if dropout_p:  # lean dropout: drawn as torch's CPU dropout draws it, kept as a bool mask
            scale = torch.empty_like(x2).bernoulli_(1 - dropout_p).div_(1 - dropout_p)
            h2, keep = x2 * scale, scale.ne(0)
        else:
            h2 = (x2 if h is None else h.reshape(-1, h.shape[-1])).to(lora_a.dtype)
        backend = gemm.get_matmul_backend()
        out, xa = _fused_forward(x2, h2, weight, bias, lora_a, lora_b, scaling, fan_in_fan_out, backend)
        saved_x = x2 if weight.requires_grad or keep is not None else None
        ctx.save_for_backward(saved_x, None if keep is not None else h2, xa, weight, lora_a, lora_b, keep)
        ctx.scaling, ctx.fan_in_fan_out, ctx.shared_input = scaling, fan_in_fan_out, h is None
        ctx.backend, ctx.dropout_p = backend, dropout_p
        ctx.x_shape, ctx.h_dtype = x.shape, None if h is None else h.dtype
        return out.reshape(*lead, out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x2, h2, xa, weight, lora_a, lora_b, keep = ctx.saved_tensors
        need_x, need_h, need_w, need_bias, need_a, need_b = ctx.needs_input_grad[:6]
        s, be = ctx.scaling, ctx.backend
        scale = None if keep is None else _dropout_scale(keep, ctx.dropout_p, x2.dtype)
        g = grad.reshape(-1, grad.shape[-1])
        ga = g.to(lora_b.dtype)
        # (xa^T g)^T rather than g^T xa: oneDNN copies a transposed left operand, and g^T is full-size.
        grad_b = gemm.mm(xa.t(), ga, be).t().mul_(s).contiguous() if need_b else None
        # (g B s)^T as r x N: the layout both MKL and oneDNN compute fast for this skinny product.
        g_xa_t = gemm.mm(lora_b.t(), ga.t(), be).mul_(s) if (need_a or need_x or need_h) else None
        if need_a and scale is not None:
            h2 = x2 * scale  # recomputed: only x (shared) and a bool mask were kept
        grad_a = gemm.mm(g_xa_t, h2, be) if need_a else None
        grad_x = grad_h = None
        if need_x:
            grad_x = gemm.mm(g, _base_weight_oi(weight, ctx.fan_in_fan_out), be)
            if scale is not None:
                grad_x += torch.mm(g_xa_t.t(), lora_a).mul_(scale)
            elif ctx.shared_input and grad_x.dtype == lora_a.dtype:
                grad_x.addmm_(g_xa_t.t(), lora_a)
            elif ctx.shared_input:
                grad_x += torch.mm(g_xa_t.t(), lora_a).to(grad_x.dtype)
            grad_x = grad_x.reshape(ctx.x_shape)
        if need_h:
            grad_h = torch.mm(g_xa_t.t(), lora_a).to(ctx.h_dtype).reshape(ctx.x_shape)
        grad_w = None
        if need_w:
            grad_w = torch.mm(x2.t(), g) if ctx.fan_in_fan_out else torch.mm(g.t(), x2)
        grad_bias = g.sum(0) if need_bias else None
        return grad_x, grad_h, grad_w, grad_bias, grad_a, grad_b, None, None, None


def can_fuse(base_layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether the fused node computes exactly what ``base_layer(x)`` would.

    Only a plain ``nn.Linear`` / Conv1D (not a subclass or parametrisation with its own forward),
    without hooks that calling the module would run, outside autocast, with ``x`` in the base dtype.
    """
    plain = type(base_layer) is nn.Linear or (
        type(base_layer).__name__ == "Conv1D" and hasattr(base_layer, "nf")
    )
    return (
        plain
        and not base_layer._forward_hooks
        and not base_layer._forward_pre_hooks
        and x.dtype == base_layer.weight.dtype
        and not torch.is_autocast_enabled(x.device.type)
    )


def lean_dropout_p(dropout: nn.Module, x: torch.Tensor, lora_a: torch.Tensor) -> float:
    """p when the fused node can draw the dropout mask itself and keep it as a bool mask (a plain
    ``nn.Dropout`` in training, a graph being built, CPU float input in the adapter's dtype: the
    draw then equals torch's CPU dropout bit for bit); 0.0 otherwise."""
    lean = (
        type(dropout) is nn.Dropout
        and dropout.training
        and 0 < dropout.p < 1
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == lora_a.dtype
    )
    return float(dropout.p) if lean else 0.0


def lora_linear(
    x: torch.Tensor,
    base_layer: nn.Module,
    fan_in_fan_out: bool,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
    dropout: nn.Module,
) -> torch.Tensor:
    """``base_layer(x) + scaling * (dropout(x) @ lora_a.T) @ lora_b.T`` as one autograd node."""
    p = lean_dropout_p(dropout, x, lora_a)
    h = None if p or isinstance(dropout, nn.Identity) else dropout(x)
    if not torch.is_grad_enabled():  # inference: no autograd node, nothing saved
        x2 = x.reshape(-1, x.shape[-1])
        h2 = (x2 if h is None else h.reshape(-1, h.shape[-1])).to(lora_a.dtype)
        out, _ = _fused_forward(
            x2, h2, base_layer.weight, base_layer.bias, lora_a, lora_b, scaling, fan_in_fan_out,
            gemm.get_matmul_backend(),
        )  # fmt: skip
        return out.reshape(*x.shape[:-1], out.shape[-1])
    return _LoraLinearFn.apply(
        x, h, base_layer.weight, base_layer.bias, lora_a, lora_b, scaling, fan_in_fan_out, p
    )
