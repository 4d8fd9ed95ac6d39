"""Content hashes of tensors, shared by adapter fingerprints and weights that remember their source."""

from __future__ import annotations

import hashlib

import torch


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_sha256(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's raw bytes (dtype-sensitive: the same values in bf16 hash differently)."""
    return hashlib.sha256(tensor_bytes(t)).hexdigest()


def weight_identity(t: torch.Tensor) -> tuple[list[int], str]:
    """(shape, sha256) naming a weight tensor exactly."""
    return list(t.shape), tensor_sha256(t)
