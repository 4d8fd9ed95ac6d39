"""LoRA around ``nn.Linear`` and transformers' GPT-2 ``Conv1D`` (weight stored transposed)."""

from __future__ import annotations

import torch
from torch import nn

from lorakit.layers.base import (
    NO_INIT,
    add_low_rank,
    add_low_rank_update,
    forget_adapter,
    init_bookkeeping,
)
from lorakit.layers.dense import base_device, is_conv1d, linear_features, uninitialised_linear
from lorakit.layers.fast_linear import can_fuse, lora_linear
from lorakit.layers.mixed import RowRouting, mixed_linear_forward
from lorakit.layers.packed import PackedWeight, base_product, packs
from lorakit.layers.variants import drop_variants


class LoraLinear(nn.Module):
    """h = base_layer(x) + sum over active adapters of scaling * B(A(dropout(x)))."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.fan_in_fan_out = is_conv1d(base_layer)
        self.in_features, self.out_features = linear_features(base_layer)
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        init_bookkeeping(self)
        # Variant state (layers/variants.py): DoRA magnitudes, and the initial factors of pissa/olora.
        self.lora_magnitude_vector = nn.ModuleDict()
        self.residual_origin = nn.ModuleDict()
        self.fast_path = True
        """Compute base + one unmerged adapter as a single fused autograd node (same result)."""
        self.row_routing: RowRouting | None = None
        """Set by ``lorakit.mixed_adapters``: one adapter per row of the batch (layers/mixed.py)."""
        self.packed_base = False
        """While no gradient is recorded, compute the base product from a oneDNN-packed copy of
        the base weight (layers/packed.py: faster decoding, one more copy of the weight)."""
        self._packed = PackedWeight()
        self._spare: tuple[nn.Module, nn.Module, nn.Module] | None = None
        """A/B/dropout of the last adapter deleted with ``keep_spare`` (not registered: no state)."""

    def add_adapter(self, name: str, r: int, scaling: float, dropout: float, init: str) -> None:
        factory = {"device": base_device(self.base_layer), "dtype": torch.float32}
        spare = self._take_spare(r, dropout, factory["device"]) if init == NO_INIT else None
        if spare is not None:  # every value is overwritten by the caller, as for NO_INIT
            a, b, drop = spare
            add_low_rank(self, name, a, b, scaling, dropout, init, dropout_module=drop)
            return
        if init == NO_INIT:  # nn.Linear's constructor would draw a random weight to be overwritten
            a = uninitialised_linear(self.in_features, r, **factory)
            b = uninitialised_linear(r, self.out_features, **factory)
        else:
            a = nn.Linear(self.in_features, r, bias=False, **factory)
            b = nn.Linear(r, self.out_features, bias=False, **factory)
        add_low_rank(self, name, a, b, scaling, dropout, init)

    def delete_adapter(self, name: str, *, keep_spare: bool = False) -> None:
        """Drop adapter ``name``; ``keep_spare`` keeps its A/B/dropout modules for the next
        uninitialised adapter of the same rank (``model.delete_adapter(..., recycle=True)``)."""
        plain = name not in self.lora_magnitude_vector and name not in self.residual_origin
        spare = (self.lora_A[name], self.lora_B[name], self.lora_dropout[name])
        drop_variants(self, name)
        forget_adapter(self, name, (self.lora_A, self.lora_B, self.lora_dropout))
        if keep_spare and plain:
            for module in spare[:2]:
                module.weight.grad = None
            self._spare = spare

    def _take_spare(self, r: int, dropout: float, device: torch.device) -> tuple[nn.Module, ...] | None:
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        a, b, drop = spare
        fits = (
            tuple(a.weight.shape) == (r, self.in_features)
            and tuple(b.weight.shape) == (self.out_features, r)
            and a.weight.dtype == b.weight.dtype == torch.float32
            and a.weight.device == b.weight.device == device
            and (
                (isinstance(drop, nn.Dropout) and drop.p == dropout)
                or (dropout == 0 and isinstance(drop, nn.Identity))
            )
        )
        return spare if fits else None

    def adapter_names(self) -> list[str]:
        return list(self.lora_A.keys())

    def delta_weight(self, name: str) -> torch.Tensor:
        delta = self.lora_B[name].weight.float() @ self.lora_A[name].weight.float()
        delta = delta * self.scaling[name]
        if name in self.lora_magnitude_vector:
            delta = self.lora_magnitude_vector[name].merged_delta(self, delta)
        return delta.T if self.fan_in_fan_out else delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.row_routing is not None:
            return mixed_linear_forward(self, self.row_routing, x)
        pending = [] if self.disabled else [n for n in self.active_adapters if n not in self.merged_adapters]
        # One plain (non-DoRA) adapter: one fused autograd node computes base + update.
        fusable = len(pending) == 1 and pending[0] not in self.lora_magnitude_vector
        packed = self.packed_base and packs(self.base_layer, x)  # then the base product goes packed
        if self.fast_path and fusable and not packed and can_fuse(self.base_layer, x):
            name = pending[0]
            a, b = self.lora_A[name].weight, self.lora_B[name].weight
            return lora_linear(
                x, self.base_layer, self.fan_in_fan_out, a, b, self.scaling[name], self.lora_dropout[name]
            )
        result = self.base_output(x)
        if self.disabled:
            return result
        for name in self.active_adapters:
            if name in self.merged_adapters:
                continue
            if name in self.lora_magnitude_vector:
                result = self.lora_magnitude_vector[name](self, name, x, result)
                continue
            result = add_low_rank_update(self, name, x, result)
        return result

    def base_output(self, x: torch.Tensor) -> torch.Tensor:
        """``base_layer(x)``, from the packed weight where ``packed_base`` allows it."""
        return base_product(self.base_layer, self._packed if self.packed_base else None, x)

    def extra_repr(self) -> str:
        packed = ", packed_base=True" if self.packed_base else ""
        merged = self.merged_adapters
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, merged={merged}{packed}"
