"""4-bit NormalFloat (NF4) weight storage: block-wise absmax scales, optional double quantization.

Each block of ``block_size`` weights is divided by its absolute maximum and every value is
rounded to the nearest of the 16 NF4 levels (Dettmers et al. 2023, QLoRA), two codes per byte.
With double quantization the float32 block scales are themselves stored as int8 around their
mean, with one float32 scale per 256 blocks.
"""

from __future__ import annotations

import torch
from torch import nn

# The NF4 levels of the QLoRA paper / bitsandbytes: quantiles of N(0, 1) scaled to [-1, 1],
# asymmetric so that zero is exactly representable.
NF4_CODEBOOK = torch.tensor(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=torch.float32,
)
_MIDPOINTS = (NF4_CODEBOOK[1:] + NF4_CODEBOOK[:-1]) / 2
SCALE_GROUP = 256
_LUTS: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _byte_lut(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(256, 2) table: the two NF4 values packed in each byte, high nibble first."""
    key = (device, dtype)
    if key not in _LUTS:
        byte = torch.arange(256)
        pairs = torch.stack([NF4_CODEBOOK[byte >> 4], NF4_CODEBOOK[byte & 15]], dim=1)
        _LUTS[key] = pairs.to(device=device, dtype=dtype)
    return _LUTS[key]


def nearest_codes(normalized: torch.Tensor) -> torch.Tensor:
    """Index (0..15) of the nearest NF4 level for values in [-1, 1]."""
    return torch.bucketize(normalized, _MIDPOINTS.to(normalized.device)).to(torch.uint8)


class NF4Storage(nn.Module):
    """A frozen weight of shape ``shape`` held as packed NF4 codes plus block scales."""

    def __init__(self, weight: torch.Tensor, block_size: int = 64, double_quant: bool = False) -> None:
        super().__init__()
        if block_size < 2 or block_size % 2:
            raise ValueError(f"block_size must be an even integer >= 2, got {block_size}")
        self.shape = tuple(weight.shape)
        self.numel = weight.numel()
        self.block_size = block_size
        self.double_quant = double_quant
        flat = weight.detach().float().reshape(-1)
        flat = torch.nn.functional.pad(flat, (0, (-flat.numel()) % block_size))
        blocks = flat.view(-1, block_size)
        absmax = blocks.abs().amax(dim=1)
        # An all-zero block still needs a positive divisor; its codes are 0.0 whatever the scale.
        safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
        codes = nearest_codes((blocks / safe[:, None]).clamp(-1, 1)).view(-1)
        self.register_buffer("codes", (codes[0::2] << 4) | codes[1::2])
        self._store_scales(absmax)

    def _store_scales(self, absmax: torch.Tensor) -> None:
        if not self.double_quant:
            self.register_buffer("absmax", absmax.contiguous())
            return
        mean = absmax.mean()
        centered = absmax - mean
        centered = torch.nn.functional.pad(centered, (0, (-centered.numel()) % SCALE_GROUP))
        groups = centered.view(-1, SCALE_GROUP)
        scale = groups.abs().amax(dim=1) / 127
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.round(groups / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("absmax_q", q.view(-1)[: absmax.numel()].clone())
        self.register_buffer("absmax_scale", scale)
        self.register_buffer("absmax_mean", mean.reshape(1))

    def block_scales(self) -> torch.Tensor:
        if not self.double_quant:
            return self.absmax
        q = torch.nn.functional.pad(self.absmax_q.float(), (0, (-self.absmax_q.numel()) % SCALE_GROUP))
        scales = q.view(-1, SCALE_GROUP) * self.absmax_scale[:, None] + self.absmax_mean
        return scales.view(-1)[: self.absmax_q.numel()]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        # int32 indices: half the transient memory of int64 ones for the same lookup.
        values = torch.index_select(_byte_lut(self.codes.device, dtype), 0, self.codes.int())
        values = values.view(-1, self.block_size) * self.block_scales().to(dtype)[:, None]
        return values.view(-1)[: self.numel].view(self.shape)

    def nbytes(self) -> int:
        """Bytes of every stored tensor (codes and scales)."""
        return sum(b.untyped_storage().nbytes() for b in self.buffers())

    def extra_repr(self) -> str:
        return f"shape={self.shape}, block_size={self.block_size}, double_quant={self.double_quant}"
