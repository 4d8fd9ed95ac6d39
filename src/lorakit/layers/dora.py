"""DoRA (Liu et al. 2024): weight-decomposed LoRA for linear-like layers.

W' = m * (W0 + s B A) / ||W0 + s B A||, the norm taken per output row. As in the paper
(section 4.3) and PEFT, the norm is treated as a constant in backward (detached), so the
outputs and gradients here equal PEFT's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from lorakit.layers.dense import original_weight_oi, weight_oi

if TYPE_CHECKING:
    from lorakit.layers.linear import LoraLinear


def row_norm(weight_oi: torch.Tensor, delta_oi: torch.Tensor) -> torch.Tensor:
    """||W0 + delta|| for every output row."""
    return torch.linalg.norm(weight_oi + delta_oi, dim=1)


class DoraMagnitude(nn.Module):
    """The trainable magnitude m (one value per output feature) of one adapter, and its computation.

    Stored as ``lora_magnitude_vector[adapter].weight`` on the LoRA wrapper, the same path PEFT uses.
    """

    def __init__(self, magnitude: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(magnitude.detach().float().clone())

    @classmethod
    def for_adapter(cls, layer: LoraLinear, name: str) -> DoraMagnitude:
        """m initialised to ||W0 + s B A|| (= ||W0|| when B starts at zero)."""
        with torch.no_grad():
            a, b = layer.lora_A[name].weight.float(), layer.lora_B[name].weight.float()
            norm = row_norm(original_weight_oi(layer), layer.scaling[name] * (b @ a))
        return cls(norm)

    def forward(self, layer: LoraLinear, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        """``result`` (the base output, bias included) plus this adapter's DoRA contribution."""
        lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
        dropout, scaling = layer.lora_dropout[name], layer.scaling[name]
        base = layer.base_layer
        x = x.to(lora_a.weight.dtype)
        weight = weight_oi(base, x.dtype).detach()
        lora_weight = (lora_b.weight @ lora_a.weight).detach()
        norm = row_norm(weight, scaling * lora_weight).detach()
        scale = (self.weight / norm).view(1, -1)
        if isinstance(dropout, nn.Identity) or not layer.training:
            bias = getattr(base, "bias", None)
            base_result = result.to(x.dtype) if bias is None else result.to(x.dtype) - bias.to(x.dtype)
        else:
            x = dropout(x)
            base_result = F.linear(x, weight)
        extra = (scale - 1) * base_result + scale * lora_b(lora_a(x)) * scaling
        return result + extra.to(result.dtype)

    def merged_delta(self, layer: LoraLinear, delta_oi: torch.Tensor) -> torch.Tensor:
        """The (out, in) float32 change to W0 that merging this adapter makes: m/||W0+d|| (W0+d) - W0."""
        w0 = original_weight_oi(layer)
        factor = (self.weight.detach().float() / row_norm(w0, delta_oi)).view(-1, 1)
        return factor * (w0 + delta_oi) - w0
