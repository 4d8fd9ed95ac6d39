"""Uniform access to the weight of a linear-like base: nn.Linear, Conv1D (stored (in, out)), QuantLinear."""

from __future__ import annotations

import torch
from torch import nn

from lorakit.digest import WeightIdentity, weight_identity
from lorakit.quant.linear import QuantLinear, is_quantized


def is_conv1d(module: nn.Module) -> bool:
    """transformers.pytorch_utils.Conv1D, recognised without importing transformers."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def is_linear_like(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, QuantLinear)) or is_conv1d(module)


def linear_features(base: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a linear-like module."""
    if is_quantized(base):
        return base.in_features, base.out_features
    rows, cols = base.weight.shape
    return (rows, cols) if is_conv1d(base) else (cols, rows)


def uninitialised_linear(
    in_features: int, out_features: int, *, device: torch.device, dtype: torch.dtype
) -> nn.Linear:
    """A bias-free ``nn.Linear`` whose weight is allocated but not initialised, for a caller that
    overwrites it at once (loading an adapter). ``nn.Linear(...)`` would run its random init,
    which costs more than the rest of attaching a loaded adapter and draws from torch's generator.
    The module is an ordinary ``nn.Linear`` in every other respect."""
    layer = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(layer)
    layer.in_features, layer.out_features = in_features, out_features
    layer.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
    layer.register_parameter("bias", None)
    return layer


def base_device(base: nn.Module) -> torch.device:
    return base.storage_device() if is_quantized(base) else base.weight.device


def weight_oi(base: nn.Module, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The base's current weight as (out, in); a view of the parameter when it is float."""
    if is_quantized(base):
        return base.dequantize_weight(dtype or torch.float32)
    w = base.weight.T if is_conv1d(base) else base.weight
    return w if dtype is None else w.to(dtype)


def original_weight_oi(layer: nn.Module) -> torch.Tensor:
    """(out, in) float32 W0 of a LoRA wrapper as it was before any merge."""
    saved = getattr(layer, "_unmerged_weight", None)
    if saved is None:
        return weight_oi(layer.base_layer, torch.float32)
    return (saved.T if is_conv1d(layer.base_layer) else saved).float()


def set_weight_oi(base: nn.Module, value: torch.Tensor) -> None:
    """Overwrite the base weight (re-quantizing a quantized one) from an (out, in) tensor."""
    if is_quantized(base):
        base.replace_weight(value)
        return
    with torch.no_grad():
        base.weight.copy_((value.T if is_conv1d(base) else value).to(base.weight.dtype))


def source_identity(base: nn.Module) -> WeightIdentity:
    """(shape, sha256) of the float weight this base module holds or was quantized from."""
    if is_quantized(base):
        return base.source_identity
    # The base is frozen, so hash it once: checkpoints save (and fingerprint) repeatedly.
    # The key changes whenever the tensor is replaced or written in place (_version).
    w = base.weight
    key = (w.data_ptr(), w._version, w.dtype, w.device, tuple(w.shape))
    cached = base.__dict__.get("_lorakit_identity")
    if cached is None or cached[0] != key:
        cached = (key, weight_identity(w))
        base.__dict__["_lorakit_identity"] = cached
    return cached[1]
