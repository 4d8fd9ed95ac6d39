"""int8 weight storage with one absmax scale per output row."""

from __future__ import annotations

import torch
from torch import nn


class Int8Storage(nn.Module):
    """A frozen (out, in) weight held as int8 codes q and row scales: W ~= q * scale[:, None]."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"int8 storage needs a 2-D weight, got shape {tuple(weight.shape)}")
        self.shape = tuple(weight.shape)
        w = weight.detach().float()
        scale = w.abs().amax(dim=1) / 127
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        self.register_buffer("q", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.q.to(dtype) * self.scale.to(dtype)[:, None]

    def nbytes(self) -> int:
        return sum(b.untyped_storage().nbytes() for b in self.buffers())

    def extra_repr(self) -> str:
        return f"shape={self.shape}"
