"""Content hashes of tensors, shared by adapter fingerprints and weights that remember their source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

# The same base loaded in another precision (an fp32 checkpoint run in bf16) must still be
# recognised, so an identity also holds the hash of the weight cast to each of these.
CAST_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def tensor_buffer(t: torch.Tensor) -> memoryview:
    """A tensor's raw bytes, in row-major order, without copying a contiguous CPU tensor."""
    return memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def tensor_bytes(t: torch.Tensor) -> bytes:
    return bytes(tensor_buffer(t))


def tensor_sha256(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's raw bytes (dtype-sensitive: the same values in bf16 hash differently)."""
    return hashlib.sha256(tensor_bytes(t)).hexdigest()


@dataclass(frozen=True)
class WeightIdentity:
    """Names a weight tensor exactly: shape, dtype, and hashes of its bytes in several precisions."""

    shape: list[int]
    dtype: str
    sha256: str
    sha256_as: dict[str, str] = field(default_factory=dict)


def weight_identity(t: torch.Tensor) -> WeightIdentity:
    t = t.detach()
    if hasattr(t, "full_tensor"):  # a DTensor sharded by FSDP: name the whole weight (collective)
        t = t.full_tensor()
    as_dtypes = {str(d): tensor_sha256(t.to(d)) for d in CAST_DTYPES} if t.is_floating_point() else {}
    return WeightIdentity(list(t.shape), str(t.dtype), tensor_sha256(t), as_dtypes)
