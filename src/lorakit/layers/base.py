"""What every LoRA wrapper shares: adapter bookkeeping and bit-exact merge/unmerge.

The wrappers are plain ``nn.Module`` s; this module holds the contract (a Protocol) and
small helper functions they call, never a base class to inherit from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from lorakit.digest import WeightIdentity, weight_identity
from lorakit.errors import MergeError
from lorakit.layers.dense import source_identity


@runtime_checkable
class LoraLayer(Protocol):
    """The contract every LoRA wrapper fulfils."""

    base_layer: nn.Module
    scaling: dict[str, float]
    r: dict[str, int]
    active_adapters: list[str]
    merged_adapters: list[str]
    disabled: bool

    def add_adapter(self, name: str, r: int, scaling: float, dropout: float, init: str) -> None: ...

    def delete_adapter(self, name: str) -> None: ...

    def delta_weight(self, name: str) -> torch.Tensor:
        """The update to ``base_layer.weight`` in float32, in the weight's own layout."""
        ...

    def adapter_names(self) -> list[str]: ...


NO_INIT = "none"
"""``init`` value for ``add_adapter`` when the caller overwrites every new tensor at once (loading
from a file): the tensors are allocated but left uninitialised, and torch's random generator is
not drawn from."""


def init_bookkeeping(layer: nn.Module) -> None:
    """Give a new wrapper the per-adapter state of the ``LoraLayer`` contract, all empty."""
    layer.scaling = {}
    layer.r = {}
    layer.active_adapters = []
    layer.merged_adapters = []
    layer.disabled = False
    layer._unmerged_weight = None


def record_adapter(layer: nn.Module, name: str, r: int, scaling: float) -> None:
    layer.r[name], layer.scaling[name] = r, scaling


def add_low_rank(
    layer: nn.Module,
    name: str,
    lora_a: nn.Module,
    lora_b: nn.Module,
    scaling: float,
    dropout: float,
    init: str,
    dropout_module: nn.Module | None = None,
) -> None:
    """Register adapter ``name`` as ``lora_A`` / ``lora_B`` / ``lora_dropout`` entries (Linear, Conv).

    A starts random and B at zero, so the update is zero at first; r is A's output size.
    """
    r = lora_a.weight.shape[0]
    layer.lora_A[name] = lora_a
    layer.lora_B[name] = lora_b
    if dropout_module is None:
        dropout_module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
    layer.lora_dropout[name] = dropout_module
    if init != NO_INIT:
        init_lora_a(lora_a.weight, r, init)
        nn.init.zeros_(lora_b.weight)
    record_adapter(layer, name, r, scaling)


def forget_adapter(layer: nn.Module, name: str, tables: Iterable[nn.ModuleDict | nn.ParameterDict]) -> None:
    """Drop adapter ``name``: its entries in ``tables``, its rank and scaling, its activation."""
    for table in tables:
        del table[name]
    del layer.r[name], layer.scaling[name]
    layer.active_adapters = [a for a in layer.active_adapters if a != name]


def add_low_rank_update(layer: nn.Module, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """``result + scaling * B(A(dropout(x)))`` for an unmerged ``lora_A`` / ``lora_B`` adapter."""
    a, b = layer.lora_A[name], layer.lora_B[name]
    h = layer.lora_dropout[name](x.to(a.weight.dtype))
    return result + (b(a(h)) * layer.scaling[name]).to(result.dtype)


def init_lora_a(weight: torch.Tensor, r: int, init: str) -> None:
    """A starts random so the gradient of B is non-zero; B starts at zero so h == W0 x at first."""
    with torch.no_grad():
        if init == "gaussian":
            nn.init.normal_(weight, std=1.0 / r)
        else:
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))


def base_weight(layer: LoraLayer) -> torch.Tensor:
    return layer.base_layer.weight


def merged_weight(layer: LoraLayer, names: list[str]) -> torch.Tensor:
    """The base weight plus the named deltas, summed in float32, cast to the weight's dtype."""
    weight = base_weight(layer)
    merged = weight.detach().float()
    for name in names:
        merged = merged + layer.delta_weight(name)
    return merged.to(weight.dtype)


def check_mergeable(module_name: str, layer: LoraLayer, names: list[str]) -> None:
    """Refuse (MergeError) a merge that would put NaN/Inf into the weight; changes nothing."""
    for name in names:
        check_finite_delta(module_name, name, layer.delta_weight(name))
    weight = base_weight(layer).detach()
    overflow = ~torch.isfinite(merged_weight(layer, names)) & torch.isfinite(weight)
    if overflow.any():
        raise MergeError(
            f"refusing to merge {names} into {module_name}: {int(overflow.sum())} values overflow "
            f"{weight.dtype}; no weight was changed"
        )


def merge_layer(layer: LoraLayer, names: list[str]) -> None:
    """Add the named deltas into the base weight, keeping the original for unmerge."""
    weight = base_weight(layer)
    todo = [n for n in names if n not in layer.merged_adapters]
    if not todo:
        return
    if not layer.merged_adapters:
        # A copy, not a subtraction later: unmerge must restore W0 bit for bit.
        layer._unmerged_weight = weight.detach().clone()
    with torch.no_grad():
        weight.data.copy_(merged_weight(layer, todo))
    layer.merged_adapters.extend(todo)


def unmerge_layer(layer: LoraLayer) -> None:
    """Restore the base weight saved by the first merge (no-op when nothing is merged)."""
    if not layer.merged_adapters:
        return
    with torch.no_grad():
        base_weight(layer).data.copy_(layer._unmerged_weight)
    layer._unmerged_weight = None
    layer.merged_adapters.clear()


def original_weight(module: nn.Module) -> torch.Tensor:
    """W0 as it was before any merge, for a LoRA wrapper or a plain module."""
    saved = getattr(module, "_unmerged_weight", None)
    if saved is not None:
        return saved
    base = getattr(module, "base_layer", module)
    return base.weight.detach()


def base_identity(module: nn.Module) -> WeightIdentity:
    """(shape, sha256) of the original base weight of a wrapper or plain module, for fingerprints.

    It names W0 even when the base now holds something else: a merged weight, the residual of a
    pissa/olora init, or a quantized copy.
    """
    origins = getattr(module, "residual_origin", None)
    if origins:
        return next(iter(origins.values())).identity
    saved = getattr(module, "_unmerged_weight", None)
    if saved is not None:
        return weight_identity(saved)
    return source_identity(getattr(module, "base_layer", module))


def check_finite_delta(module_name: str, adapter: str, delta: torch.Tensor) -> None:
    if not torch.isfinite(delta).all():
        bad = int((~torch.isfinite(delta)).sum())
        raise MergeError(
            f"refusing to merge adapter {adapter!r} into {module_name}: its delta has {bad} "
            "non-finite values (NaN/Inf); no weight was changed"
        )
