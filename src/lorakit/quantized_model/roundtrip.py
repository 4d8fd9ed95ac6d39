"""Re-quantizing a merged float model in place: every weight snapped to its quantization grid.

lorakit has no on-disk quantized model format, so `lorakit merge --requantize` writes the
dequantized values of Q(W) in float: a transformers folder that computes exactly what the
re-quantized model computes, together with the error the re-quantization introduced.
"""

from __future__ import annotations

import torch
from torch import nn

from lorakit.layers.dense import is_conv1d
from lorakit.quant.config import QuantConfig
from lorakit.quant.linear import make_storage
from lorakit.quantized_model.quantize import quantizable_modules


def requantize_in_place(model: nn.Module, cfg: QuantConfig) -> dict[str, float]:
    """Replace each quantizable float weight W by dequantize(quantize(W)).

    Returns ||Q(W) - W||_F / ||W||_F per module; the modules ``quantize_model`` would skip
    (output heads, ``cfg.skip``) are left untouched.
    """
    errors: dict[str, float] = {}
    with torch.no_grad():
        for name, module in quantizable_modules(model, cfg):
            weight = module.weight
            weight_oi = weight.T if is_conv1d(module) else weight
            snapped = make_storage(weight_oi.float(), cfg).dequantize(torch.float32)
            diff = torch.linalg.norm(snapped - weight_oi.float())
            errors[name] = float(diff / torch.linalg.norm(weight_oi.float()).clamp_min(1e-30))
            weight.copy_((snapped.T if is_conv1d(module) else snapped).to(weight.dtype))
    return errors
