"""Merging an adapter into a quantized base: dequantize, add the delta, keep float or re-quantize."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lorakit.errors import MergeError
from lorakit.layers.base import check_finite_delta, check_mergeable
from lorakit.layers.dense import original_weight_oi
from lorakit.merging import merge_and_unload
from lorakit.model import adapter_state, lora_layers, replace_module
from lorakit.quant.linear import QuantLinear, is_quantized


@dataclass
class QuantMergeReport:
    """Per module, ||Q(W) - W||_F / ||W||_F for the merged weight W (0.0 when kept in float)."""

    requantized: bool
    relative_error: dict[str, float] = field(default_factory=dict)

    @property
    def max_relative_error(self) -> float:
        return max(self.relative_error.values(), default=0.0)


def merge_and_unload_quantized(model: nn.Module, *, requantize: bool) -> tuple[nn.Module, QuantMergeReport]:
    """Merge the active adapter and remove all adapters, also where the base is quantized.

    Each quantized base gets W = dequantize(Q) + delta in float32; with ``requantize=False`` it
    becomes an nn.Linear holding W, with ``requantize=True`` a QuantLinear of W (same method),
    and the report gives the relative error that re-quantization added. Other layers merge as
    ``merge_and_unload`` does. As with ``merge``, every layer is checked first: a non-finite
    delta (or a sum that overflows) raises MergeError and leaves the model untouched.
    """
    active = adapter_state(model).active
    report = QuantMergeReport(requantized=requantize)
    layers = list(lora_layers(model))
    with torch.no_grad():
        for name, layer in layers:  # one delta alive at a time, so memory stays flat
            _check(name, layer, active)
        for name, layer in layers:
            base = layer.base_layer
            if not is_quantized(base):
                continue
            merged = original_weight_oi(layer)
            if active in layer.adapter_names():
                merged = merged + layer.delta_weight(active)
            new, error = _rebuild(base, merged, requantize)
            report.relative_error[name] = error
            replace_module(model, name, new)
    return merge_and_unload(model), report


def _check(module_name: str, layer: nn.Module, active: str | None) -> None:
    """Refuse what ``merge`` would refuse, before any module is replaced."""
    if active is None or active not in layer.adapter_names() or active in layer.merged_adapters:
        return
    if not is_quantized(layer.base_layer):
        check_mergeable(module_name, layer, [active])
        return
    delta = layer.delta_weight(active)
    check_finite_delta(module_name, active, delta)
    overflow = int((~torch.isfinite(original_weight_oi(layer) + delta)).sum())
    if overflow:
        raise MergeError(
            f"refusing to merge {[active]} into {module_name}: {overflow} values overflow float32; "
            "no weight was changed"
        )


def _rebuild(base: QuantLinear, merged: torch.Tensor, requantize: bool) -> tuple[nn.Module, float]:
    bias = base.bias
    if requantize:
        new = QuantLinear(merged, bias, base.cfg)
        err = torch.linalg.norm(new.dequantize_weight() - merged) / torch.linalg.norm(merged).clamp_min(1e-30)
        return new, float(err)
    linear = nn.Linear(base.in_features, base.out_features, bias=bias is not None, device=merged.device)
    linear.weight.copy_(merged)
    if bias is not None:
        linear.bias.copy_(bias)
    linear.requires_grad_(False)
    return linear, 0.0
