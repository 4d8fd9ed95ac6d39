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


def fingerprint(architecture: str, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Identity of the base: architecture, target shapes and a hash of the targeted weights."""
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(tensor_bytes(weights[name]))
    return {
        "architecture": architecture,
        "shapes": {n: list(w.shape) for n, w in sorted(weights.items())},
        "weights_sha256": h.hexdigest(),
    }


def fingerprint_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """A sentence saying how two fingerprints differ, or None when they agree."""
    if saved.get("architecture") != current["architecture"]:
        return f"architecture {saved.get('architecture')!r} != {current['architecture']!r}"
    if saved.get("shapes") != current["shapes"]:
        return "target shapes differ"
    if saved.get("weights_sha256") != current["weights_sha256"]:
        return "the targeted base weights differ (same shapes, different values)"
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
    raw = safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    return canonical_safetensors(raw)


def canonical_safetensors(raw: bytes) -> bytes:
    """The same file with its JSON header keys sorted.

    safetensors writes the header from a hash map whose order changes between processes, so
    identical tensors would give different bytes; sorting makes saving reproducible (resumed
    runs are compared byte for byte). Offsets refer to the data section and stay valid.
    """
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data section to 8 bytes
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


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
