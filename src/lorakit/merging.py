"""Explicit merge / unmerge / unload. Nothing here happens as a side effect of train()/eval()."""

from __future__ import annotations

import torch
from torch import nn

from lorakit.errors import ConfigError, MergeError
from lorakit.layers.base import check_mergeable, merge_layer, unmerge_layer
from lorakit.layers.variants import drop_variants
from lorakit.model import adapter_state, has_adapters, lora_layers, replace_module, saved_modules
from lorakit.quant.linear import is_quantized


def merge(model: nn.Module, adapter_names: list[str] | None = None) -> nn.Module:
    """Add the active (or named) adapters into the base weights, computed in float32.

    Every merge is checked before any weight changes, so a non-finite delta (or one that
    overflows a half-precision weight) raises MergeError and leaves the model untouched.
    Merging again is a no-op; ``unmerge`` restores bit-exactly.
    """
    state = adapter_state(model)
    names = adapter_names if adapter_names is not None else [state.active] if state.active else []
    unknown = [n for n in names if n not in state.configs]
    if unknown:
        raise ConfigError(f"merge: no adapter named {unknown[0]!r}; this model has {list(state.configs)}")
    plans: list[tuple[nn.Module, list[str]]] = []
    with torch.no_grad():
        # Two passes: check everything first (one layer's delta alive at a time, so memory stays
        # flat on large models), then merge. A refusal leaves every weight untouched.
        for module_name, layer in lora_layers(model):
            todo = [n for n in names if n in layer.adapter_names() and n not in layer.merged_adapters]
            if todo and is_quantized(layer.base_layer):
                raise MergeError(
                    f"{module_name} has a quantized base: use lorakit.merge_and_unload_quantized"
                    "(model, requantize=...) to merge into a float or re-quantized base"
                )
            if todo:
                check_mergeable(module_name, layer, todo)
                plans.append((layer, todo))
        for layer, todo in plans:
            merge_layer(layer, todo)
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Restore every base weight to what it was before the first merge, bit for bit."""
    for _, layer in lora_layers(model):
        unmerge_layer(layer)
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge the active adapter and give back the model with its original module classes."""
    if has_adapters(model):
        merge(model)
    for name, layer in list(lora_layers(model)):
        layer._unmerged_weight = None
        replace_module(model, name, layer.base_layer)
    for name, module in list(saved_modules(model)):
        replace_module(model, name, module.active_module())
    model.__dict__.pop("_lorakit", None)
    return model


def unload(model: nn.Module) -> nn.Module:
    """Remove every adapter without merging: the model is its base again."""
    unmerge(model)
    for name, layer in list(lora_layers(model)):
        for adapter in list(getattr(layer, "residual_origin", {})):
            drop_variants(layer, adapter)
        replace_module(model, name, layer.base_layer)
    for name, module in list(saved_modules(model)):
        replace_module(model, name, module.original_module)
    model.__dict__.pop("_lorakit", None)
    return model
