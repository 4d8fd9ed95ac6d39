"""``quantize_model``: store a model's base Linear weights quantized, before LoRA is injected."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lorakit.errors import LorakitError
from lorakit.layers.dense import is_conv1d
from lorakit.model import has_adapters, replace_module
from lorakit.quant.config import QuantConfig, QuantMethod
from lorakit.quant.linear import QuantLinear, is_quantized
from lorakit.targeting import is_output_head


@dataclass(frozen=True)
class QuantReport:
    """What ``quantize_model`` replaced and the bytes their weights take before and after."""

    modules: list[str]
    float32_bytes: int
    quantized_bytes: int

    @property
    def ratio(self) -> float:
        return self.quantized_bytes / self.float32_bytes if self.float32_bytes else 0.0


def quantize_model(model: nn.Module, config: QuantConfig | QuantMethod = "nf4") -> QuantReport:
    """Replace every nn.Linear / Conv1D (except output heads and ``config.skip``) by a QuantLinear.

    Call it before ``inject``: LoRA then wraps each QuantLinear as its base_layer, A/B stay float32.
    The float weights are released, so the model's memory shrinks accordingly.
    """
    cfg = QuantConfig(method=config) if isinstance(config, str) else config
    if not isinstance(cfg, QuantConfig):
        raise LorakitError(f"quantize_model: expected a QuantConfig or 'nf4'/'int8', got {config!r}")
    if has_adapters(model):
        raise LorakitError("quantize_model must run before inject: this model already has LoRA adapters")
    chosen = quantizable_modules(model, cfg)
    float_bytes = quant_bytes = 0
    for name, module in chosen:
        with torch.no_grad():
            q = QuantLinear.from_module(module, cfg, fan_in_fan_out=is_conv1d(module))
        replace_module(model, name, q)
        float_bytes += module.weight.numel() * 4
        quant_bytes += q.storage.nbytes()
    return QuantReport([n for n, _ in chosen], float_bytes, quant_bytes)


def quantizable_modules(model: nn.Module, cfg: QuantConfig) -> list[tuple[str, nn.Module]]:
    """The float nn.Linear / Conv1D modules ``quantize_model`` replaces: all but output heads and skip."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if name
        and (isinstance(m, nn.Linear) or is_conv1d(m))
        and not is_output_head(name, model, m)
        and not any(name == s or name.endswith("." + s) for s in cfg.skip)
    ]


def quantized_modules(model: nn.Module) -> list[tuple[str, QuantLinear]]:
    return [(n, m) for n, m in model.named_modules() if is_quantized(m)]
