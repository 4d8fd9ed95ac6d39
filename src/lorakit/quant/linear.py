"""``QuantLinear``: a frozen Linear whose weight is stored quantized and dequantized on the fly."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lorakit.digest import WeightIdentity, weight_identity
from lorakit.quant.config import QuantConfig
from lorakit.quant.int8 import Int8Storage
from lorakit.quant.nf4 import NF4Storage

Storage = NF4Storage | Int8Storage


class _DequantLinear(torch.autograd.Function):
    """y = x @ W^T with W rebuilt from its quantized storage in forward and again in backward.

    Only the storage is kept for backward, never the dequantized float weight, so a layer's
    float weight exists only transiently while its own matmul runs.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, storage: Storage) -> torch.Tensor:
        ctx.storage = storage
        return x @ storage.dequantize(x.dtype).T

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        return grad @ ctx.storage.dequantize(grad.dtype), None


def make_storage(weight_oi: torch.Tensor, cfg: QuantConfig) -> Storage:
    if cfg.method == "nf4":
        return NF4Storage(weight_oi, cfg.block_size, cfg.double_quant)
    return Int8Storage(weight_oi)


class QuantLinear(nn.Module):
    """Frozen y = x W^T + b with W quantized. Remembers the identity of the float weight it came from,
    so adapters trained on it carry the fingerprint of the original float base."""

    def __init__(
        self,
        weight_oi: torch.Tensor,
        bias: torch.Tensor | None,
        cfg: QuantConfig,
        source: WeightIdentity | None = None,
    ) -> None:
        super().__init__()
        self.out_features, self.in_features = weight_oi.shape
        self.cfg = cfg
        self.storage = make_storage(weight_oi, cfg)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.source_identity = source if source is not None else weight_identity(weight_oi)

    @classmethod
    def from_module(cls, module: nn.Module, cfg: QuantConfig, fan_in_fan_out: bool) -> QuantLinear:
        """Quantize an nn.Linear (or a transformers Conv1D, whose weight is stored (in, out))."""
        weight = module.weight.detach()
        source = weight_identity(weight)
        weight_oi = weight.T if fan_in_fan_out else weight
        return cls(weight_oi, module.bias, cfg, source)

    def dequantize_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The (out, in) weight in float; a fresh tensor unconnected to autograd."""
        return self.storage.dequantize(dtype)

    def replace_weight(self, weight_oi: torch.Tensor) -> None:
        """Re-quantize from a new float weight, keeping the identity of the original source."""
        self.storage = make_storage(weight_oi.to(self.storage_device()), self.cfg)

    def storage_device(self) -> torch.device:
        return next(self.storage.buffers()).device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _DequantLinear.apply(x, self.storage)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, method={self.cfg.method}"


def is_quantized(module: nn.Module) -> bool:
    return isinstance(module, QuantLinear)
