"""LoRA around ``nn.Conv1d`` / ``nn.Conv2d``: A is a conv with the base kernel, B a 1x1 conv."""

from __future__ import annotations

import torch
from torch import nn

from lorakit.errors import TargetError
from lorakit.layers.base import add_low_rank, add_low_rank_update, forget_adapter, init_bookkeeping


class LoraConv(nn.Module):
    """h = base_layer(x) + scaling * B(A(dropout(x))), A: in -> r (base kernel), B: r -> out (1x1)."""

    def __init__(self, base_layer: nn.Conv1d | nn.Conv2d) -> None:
        super().__init__()
        if base_layer.groups != 1:
            raise TargetError(f"grouped convolutions (groups={base_layer.groups}) are not supported")
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_channels, base_layer.out_channels
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        init_bookkeeping(self)

    def add_adapter(self, name: str, r: int, scaling: float, dropout: float, init: str) -> None:
        base = self.base_layer
        conv = type(base)
        factory = {"device": base.weight.device, "dtype": torch.float32}
        a = conv(
            base.in_channels,
            r,
            base.kernel_size,
            base.stride,
            base.padding,
            base.dilation,
            bias=False,
            padding_mode=base.padding_mode,
            **factory,
        )
        b = conv(r, base.out_channels, 1, 1, bias=False, **factory)
        add_low_rank(self, name, a, b, scaling, dropout, init)

    def delete_adapter(self, name: str) -> None:
        forget_adapter(self, name, (self.lora_A, self.lora_B, self.lora_dropout))

    def adapter_names(self) -> list[str]:
        return list(self.lora_A.keys())

    def delta_weight(self, name: str) -> torch.Tensor:
        # B is 1x1, so composing the two convolutions is a matrix product over channels.
        a = self.lora_A[name].weight.float()
        b = self.lora_B[name].weight.float()
        delta = b.flatten(1) @ a.flatten(1)
        return delta.view(self.base_layer.weight.shape) * self.scaling[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.disabled:
            return result
        for name in self.active_adapters:
            if name in self.merged_adapters:
                continue
            result = add_low_rank_update(self, name, x, result)
        return result
