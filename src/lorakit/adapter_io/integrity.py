"""Fingerprints of the base model, content checksums, atomic writes and safe reads."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from lorakit.errors import AdapterFileError

FINGERPRINT_KEY = "lorakit.fingerprint"
CHECKSUM_KEY = "lorakit.checksum"


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


# Finest first. The same base loaded in another precision (fp32 checkpoint run in bf16) must
# still be recognised, so a fingerprint also holds the hash of the weights cast to each of these.
_PRECISION = ("torch.float64", "torch.float32", "torch.float16", "torch.bfloat16")
_CAST_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def weights_hash(weights: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> str:
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        w = weights[name]
        h.update(tensor_bytes(w if dtype is None else w.to(dtype)))
    return h.hexdigest()


def fingerprint(architecture: str, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Identity of the base: architecture, target shapes and a hash of the targeted weights."""
    return {
        "architecture": architecture,
        "shapes": {n: list(w.shape) for n, w in sorted(weights.items())},
        "weights_sha256": weights_hash(weights),
        "dtypes": sorted({str(w.dtype) for w in weights.values()}),
        "weights_sha256_as": {str(d): weights_hash(weights, d) for d in _CAST_DTYPES},
    }


def fingerprint_mismatch(
    saved: dict[str, Any], architecture: str, weights: dict[str, torch.Tensor]
) -> str | None:
    """A sentence saying how the saved fingerprint differs from these base weights, or None."""
    if saved.get("architecture") != architecture:
        return f"architecture {saved.get('architecture')!r} != {architecture!r}"
    if saved.get("shapes") != {n: list(w.shape) for n, w in sorted(weights.items())}:
        return "target shapes differ"
    current = {str(w.dtype) for w in weights.values()}
    saved_dtypes = set(saved.get("dtypes") or [])
    if not saved_dtypes or saved_dtypes == current:
        same = saved.get("weights_sha256") == weights_hash(weights)
        where = ""
    else:
        # Compare in the coarsest precision involved: casting finer weights down reproduces it.
        coarse = max(current | saved_dtypes, key=lambda d: _PRECISION.index(d) if d in _PRECISION else 99)
        table = saved.get("weights_sha256_as") or {}
        dtype = getattr(torch, coarse.removeprefix("torch."), None)
        same = isinstance(dtype, torch.dtype) and table.get(coarse) == weights_hash(weights, dtype)
        where = f" (compared in {coarse}: saved on {sorted(saved_dtypes)}, loading onto {sorted(current)})"
    if not same:
        return f"the targeted base weights differ (same shapes, different values){where}"
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def safetensors_payload(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    return safetensors_bytes(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata
    )


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; any corruption becomes an AdapterFileError."""
    if not path.is_file():
        raise AdapterFileError(f"{path}: adapter_model.safetensors not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open API
    except Exception as e:  # safetensors raises several types for damaged files
        raise AdapterFileError(f"{path}: not a readable safetensors file ({e})") from e
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise AdapterFileError(f"{path}: tensor {key!r} has non-float dtype {t.dtype}")
        if not torch.isfinite(t).all():
            raise AdapterFileError(f"{path}: tensor {key!r} holds NaN or Inf values")
    stored = metadata.get(CHECKSUM_KEY)
    if stored is not None and stored != checksum(tensors):
        raise AdapterFileError(f"{path}: content checksum mismatch: the file is corrupt")
    return tensors, metadata


def parse_json_metadata(metadata: dict[str, str], key: str, path: Path) -> Any:
    if key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as e:
        raise AdapterFileError(f"{path}: metadata {key!r} is not valid JSON ({e.msg})") from e
