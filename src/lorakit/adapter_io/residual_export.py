"""Saving a pissa/olora adapter as the equivalent plain LoRA against the original base.

Training such an adapter leaves the base holding W0 - s B0 A0 and the adapter holding B, A,
so the trained weight is W0 + s (B A - B0 A0) = W0 + s [B, -B0] [A; A0]. The file stores that
rank-2r pair with alpha adjusted so the scaling stays s, and plain init: it loads onto the
original (non-residual) base model, in lorakit or PEFT.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lorakit.adapter_io.keys import PREFIX
from lorakit.config import LoraConfig
from lorakit.model import lora_layers


def as_plain_lora(
    model: nn.Module, name: str, cfg: LoraConfig, tensors: dict[str, torch.Tensor]
) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
    """(config, tensors) of the plain rank-2r LoRA equal to residual-init adapter ``name``."""
    out = dict(tensors)
    for path, layer in lora_layers(model):
        if name not in layer.adapter_names():
            continue
        origin = layer.residual_origin[name]
        a_key, b_key = f"{PREFIX}{path}.lora_A.weight", f"{PREFIX}{path}.lora_B.weight"
        out[a_key] = torch.cat([tensors[a_key], origin.a0.detach().cpu().to(tensors[a_key].dtype)], dim=0)
        out[b_key] = torch.cat([tensors[b_key], -origin.b0.detach().cpu().to(tensors[b_key].dtype)], dim=1)
    # Doubling r halves alpha / r (and divides alpha / sqrt(r) by sqrt(2)); alpha compensates.
    factor = math.sqrt(2.0) if cfg.use_rslora else 2.0
    plain = cfg.replaced(
        init="kaiming",
        r=2 * cfg.r,
        alpha=cfg.alpha * factor,
        rank_pattern={k: 2 * v for k, v in cfg.rank_pattern.items()},
        alpha_pattern={k: v * factor for k, v in cfg.alpha_pattern.items()},
    )
    return plain, out
