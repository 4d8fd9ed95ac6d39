"""LoRA wrappers: each keeps the original module as ``base_layer``."""

from __future__ import annotations

from torch import nn

from lorakit.errors import TargetError
from lorakit.layers.base import LoraLayer
from lorakit.layers.conv import LoraConv
from lorakit.layers.dense import is_conv1d, is_linear_like
from lorakit.layers.embedding import LoraEmbedding
from lorakit.layers.linear import LoraLinear
from lorakit.layers.modules_to_save import ModulesToSave

LORA_TYPES = (LoraLinear, LoraEmbedding, LoraConv)
SUPPORTED = "nn.Linear, transformers Conv1D, lorakit QuantLinear, nn.Embedding, nn.Conv1d, nn.Conv2d"


def is_supported(module: nn.Module) -> bool:
    return isinstance(module, (nn.Embedding, nn.Conv1d, nn.Conv2d)) or is_linear_like(module)


def wrap(module: nn.Module, name: str) -> LoraLinear | LoraEmbedding | LoraConv:
    """The LoRA wrapper for ``module``; a clear error for any type lorakit cannot adapt."""
    if is_linear_like(module):
        return LoraLinear(module)
    if isinstance(module, nn.Embedding):
        return LoraEmbedding(module)
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return LoraConv(module)
    raise TargetError(
        f"target {name!r} is a {type(module).__module__}.{type(module).__name__}, which lorakit "
        f"cannot adapt; supported types: {SUPPORTED}"
    )


__all__ = [
    "LORA_TYPES",
    "SUPPORTED",
    "LoraConv",
    "LoraEmbedding",
    "LoraLayer",
    "LoraLinear",
    "ModulesToSave",
    "is_conv1d",
    "is_linear_like",
    "is_supported",
    "wrap",
]
