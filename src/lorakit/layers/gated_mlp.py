"""``GatedMLP``: a transformers gated MLP that keeps two activations for backward instead of three.

Llama-family MLPs (Llama, SmolLM2, Mistral, Qwen2, ...) compute
``down_proj(silu(gate_proj(x)) * up_proj(x))``. Under autograd that saves ``gate`` (for silu's
backward), ``silu(gate)`` and ``up`` (for the product's backward): three (tokens x intermediate)
tensors per layer, 6 MB each per 1,024 tokens on SmolLM2. ``silu_mul`` saves ``gate`` and ``up``
only and recomputes ``silu(gate)`` (one elementwise pass) in backward; its values and gradients
are those of the plain ops bit for bit (the same kernels in the same order).

``GatedMLP`` takes the place of such an MLP, holding the MLP's own projection modules under the
same names (so parameter names, checkpoints and adapter files do not change, and LoRA,
frozen-path or quantized projections work unchanged) and keeping the original MLP for
``unwrap_gated_mlps``. It is only put in place after :func:`gated_mlp_matches` confirmed on a
random input that it computes what the MLP computes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
SILU_NAMES = ("SiLU", "SiLUActivation")


class _SiluMulFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gate, up = ctx.saved_tensors
        need_gate, need_up = ctx.needs_input_grad
        grad_up = grad * F.silu(gate) if need_up else None
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate) if need_gate else None
        return grad_gate, grad_up


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up``, saving only ``gate`` and ``up`` for backward."""
    if not torch.is_grad_enabled() or not (gate.requires_grad or up.requires_grad):
        return F.silu(gate) * up
    return _SiluMulFn.apply(gate, up)


def is_gated_silu_mlp(module: nn.Module) -> bool:
    """The shape of a Llama-family MLP: gate/up/down projections and a SiLU ``act_fn``, nothing
    else (no parameters or buffers of its own, no other children, no hooks)."""
    act = getattr(module, "act_fn", None)
    children = {name for name, _ in module.named_children()}
    return (
        not isinstance(module, GatedMLP)
        and all(isinstance(getattr(module, p, None), nn.Module) for p in PROJECTIONS)
        and children <= {*PROJECTIONS, "act_fn"}
        and type(act).__name__ in SILU_NAMES
        and not module._parameters
        and not module._buffers
        and not module._forward_hooks
        and not module._forward_pre_hooks
    )


def gated_forward(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return mlp.down_proj(silu_mul(mlp.gate_proj(x), mlp.up_proj(x)))


def gated_mlp_matches(mlp: nn.Module) -> bool:
    """Whether ``gated_forward`` computes exactly what ``mlp`` computes (checked on a random input)."""
    weight = next(mlp.parameters(), None)
    if weight is None or weight.device.type == "meta":
        return False
    features = getattr(mlp.gate_proj, "in_features", None)
    if not isinstance(features, int):
        return False
    g = torch.Generator(device=weight.device).manual_seed(0)
    x = torch.randn(2, 3, features, generator=g, device=weight.device).to(weight.dtype)
    was_training = mlp.training
    mlp.eval()  # no dropout draws: both sides deterministic, the global RNG untouched
    try:
        with torch.no_grad():
            return torch.equal(mlp(x), gated_forward(mlp, x))
    except Exception:  # an MLP whose forward takes more than x, or other shapes
        return False
    finally:
        mlp.train(was_training)


class GatedMLP(nn.Module):
    """A Llama-family MLP whose silu-product saves two tensors, not three.

    It holds the MLP's own projection modules under the same names (``gate_proj``, ``up_proj``,
    ``down_proj``, ``act_fn``), so every parameter keeps its name (checkpoints, adapter files);
    the original MLP object is kept, unregistered, for ``original()``."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        if not is_gated_silu_mlp(mlp):
            raise TypeError(f"GatedMLP wraps a gated SiLU MLP, got {type(mlp).__name__}")
        for name in (*PROJECTIONS, "act_fn"):
            setattr(self, name, getattr(mlp, name))
        self.__dict__["_mlp"] = mlp  # not a child: its parameters are already ours
        self.train(mlp.training)

    def original(self) -> nn.Module:
        """The wrapped MLP, holding this wrapper's current projections (e.g. a LoRA layer
        injected after wrapping)."""
        mlp = self.__dict__["_mlp"]
        for name in (*PROJECTIONS, "act_fn"):
            setattr(mlp, name, getattr(self, name))
        mlp.train(self.training)
        return mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gated_forward(self, x)

    def extra_repr(self) -> str:
        return f"wraps {type(self.__dict__['_mlp']).__name__}: silu(gate) recomputed in backward"
