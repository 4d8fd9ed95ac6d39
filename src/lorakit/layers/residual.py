"""Initialisations that move part of W0 into the adapter (pissa, olora).

A and B start as factors of W0 and the base keeps the residual W0 - s B0 A0, so the model's
output is unchanged at init. The wrapper remembers A0, B0 and the identity of the original W0:
the adapter can then be saved as the plain LoRA delta s (B A - B0 A0) against the original
base (rank 2r), and its fingerprint names the original weights, not the residual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from lorakit.digest import WeightIdentity
from lorakit.layers.dense import original_weight_oi, set_weight_oi, source_identity

if TYPE_CHECKING:
    from lorakit.layers.linear import LoraLinear


class ResidualInit(Protocol):
    def factors(self, weight_oi: torch.Tensor, r: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (r x in), B (out x r)) such that s B A approximates part of W0."""
        ...


class PissaInit:
    """PiSSA (Meng et al. 2024): the top-r singular triplets, split evenly between A and B."""

    def factors(self, weight_oi: torch.Tensor, r: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
        u, s, vh = torch.linalg.svd(weight_oi, full_matrices=False)
        root = torch.sqrt(s[:r] / scaling)
        return root[:, None] * vh[:r], u[:, :r] * root[None, :]


class OloraInit:
    """OLoRA (Büyükakyüz 2024): B = first r columns of Q, A = first r rows of R, W0 = Q R."""

    def factors(self, weight_oi: torch.Tensor, r: int, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
        q, rr = torch.linalg.qr(weight_oi)
        return rr[:r].contiguous(), q[:, :r].contiguous()


RESIDUAL_STRATEGIES: dict[str, ResidualInit] = {"pissa": PissaInit(), "olora": OloraInit()}


class ResidualOrigin(nn.Module):
    """A0, B0 of a residual init (not saved in state dicts) and the identity of the original W0."""

    def __init__(self, a0: torch.Tensor, b0: torch.Tensor, identity: WeightIdentity) -> None:
        super().__init__()
        self.register_buffer("a0", a0.detach().clone(), persistent=False)
        self.register_buffer("b0", b0.detach().clone(), persistent=False)
        self.identity = identity

    def initial_delta(self, scaling: float) -> torch.Tensor:
        return scaling * (self.b0 @ self.a0)


def apply_residual_init(layer: LoraLinear, name: str, strategy: ResidualInit) -> None:
    """Set A, B of adapter ``name`` from W0 and leave the residual in the base weight."""
    r, scaling = layer.r[name], layer.scaling[name]
    w0 = original_weight_oi(layer)
    identity = source_identity(layer.base_layer)
    with torch.no_grad():
        a, b = strategy.factors(w0, r, scaling)
        layer.lora_A[name].weight.copy_(a)
        layer.lora_B[name].weight.copy_(b)
        origin = ResidualOrigin(layer.lora_A[name].weight, layer.lora_B[name].weight, identity)
        set_weight_oi(layer.base_layer, w0 - origin.initial_delta(scaling))
    layer.residual_origin[name] = origin


def restore_base(layer: LoraLinear, name: str) -> None:
    """Put s B0 A0 back into the base (W0 again, up to float rounding) when the adapter goes."""
    origin = layer.residual_origin[name]
    with torch.no_grad():
        set_weight_oi(layer.base_layer, original_weight_oi(layer) + origin.initial_delta(layer.scaling[name]))
    del layer.residual_origin[name]
