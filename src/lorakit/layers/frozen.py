"""``FrozenLinear``: a frozen ``nn.Linear`` without an adapter, computed on lorakit's GEMM path.

In a LoRA step most products belong to layers LoRA does not adapt (on SmolLM2 with q_proj+v_proj:
k/o/MLP projections and the 49,152-wide LM head). Such a layer needs only its output and its input
gradient, never its weight gradient. ``FrozenLinear`` wraps the layer the way LoRA layers do (the
original stays as ``base_layer``, the state-dict keys gain ``.base_layer``; unwrap with
``lorakit.unwrap_frozen_layers``) and computes both products with ``gemm.linear`` / ``gemm.mm``:
under ``MatmulBackend.AUTO`` each shape runs on whichever of oneDNN and MKL measured faster, under
``TORCH`` the result is bit-identical to ``nn.Linear``.

The fast node is used only when it computes exactly what ``base_layer(x)`` computes (see
:func:`frozen_fusable`): a plain ``nn.Linear`` whose weight is frozen, no hooks, no autocast,
input in the weight's dtype. Anything else calls ``base_layer(x)``. The node saves only the
weight (a reference, no copy), never the input.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lorakit.layers import gemm
from lorakit.layers.packed import PackedWeight, packed_product, packs


class _FrozenLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        backend = gemm.get_matmul_backend()
        out = gemm.linear(x.reshape(-1, x.shape[-1]), weight, bias, backend)
        ctx.save_for_backward(weight)
        ctx.backend, ctx.x_shape = backend, x.shape
        return out.reshape(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None]:
        (weight,) = ctx.saved_tensors
        need_x, _, need_bias = ctx.needs_input_grad
        g = grad.reshape(-1, grad.shape[-1])
        grad_x = gemm.mm(g, weight, ctx.backend).reshape(ctx.x_shape) if need_x else None
        return grad_x, None, g.sum(0) if need_bias else None


def frozen_fusable(base_layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether the fast node computes exactly what ``base_layer(x)`` would, without a weight gradient."""
    return (
        type(base_layer) is nn.Linear
        and not base_layer.weight.requires_grad
        and not base_layer._forward_hooks
        and not base_layer._forward_pre_hooks
        and x.dtype == base_layer.weight.dtype
        and not torch.is_autocast_enabled(x.device.type)
    )


def frozen_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias`` with no weight gradient, on lorakit's GEMM path."""
    if not torch.is_grad_enabled() or not (x.requires_grad or (bias is not None and bias.requires_grad)):
        out = gemm.linear(x.reshape(-1, x.shape[-1]), weight, bias)  # nothing to save
        return out.reshape(*x.shape[:-1], out.shape[-1])
    return _FrozenLinearFn.apply(x, weight, bias)


class FrozenLinear(nn.Module):
    """A frozen ``nn.Linear`` (kept as ``base_layer``) computed on lorakit's GEMM path."""

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        if type(base_layer) is not nn.Linear:
            raise TypeError(f"FrozenLinear wraps a plain nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.packed = False
        """While no gradient is recorded, multiply by a oneDNN-packed copy of the weight
        (layers/packed.py: faster decoding, one more copy of the weight)."""
        self._packed = PackedWeight()

    @property
    def weight(self) -> nn.Parameter:
        """The base layer's weight (read by code that inspects e.g. ``lm_head.weight``)."""
        return self.base_layer.weight

    @property
    def bias(self) -> nn.Parameter | None:
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed and packs(self.base_layer, x):
            return packed_product(self.base_layer, self._packed, x)
        if frozen_fusable(self.base_layer, x):
            return frozen_linear(x, self.base_layer.weight, self.base_layer.bias)
        return self.base_layer(x)

    def extra_repr(self) -> str:
        packed = ", packed=True" if self.packed else ""
        return f"in={self.in_features}, out={self.out_features}, gemm=lorakit{packed}"
