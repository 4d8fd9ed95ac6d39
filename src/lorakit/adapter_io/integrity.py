"""Fingerprints of the base model, content checksums, atomic writes and safe reads."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes

from lorakit.adapter_io.st_header import TensorEntry, parse_header
from lorakit.adapter_io.st_read import (
    file_checksum,
    read_file,
    region_all_finite,
    tensor_views,
    views_possible,
)
from lorakit.digest import WeightIdentity, tensor_buffer
from lorakit.errors import AdapterFileError

FINGERPRINT_KEY = "lorakit.fingerprint"
CHECKSUM_KEY = "lorakit.checksum"
SCALING_KEY = "lorakit.scaling"
CONFIG_KEY = "lorakit.config"
# Every file lorakit writes has these; a file with some lorakit keys but not all is damaged.
REQUIRED_KEYS = frozenset({CHECKSUM_KEY, FINGERPRINT_KEY, SCALING_KEY})
LORAKIT_KEYS = REQUIRED_KEYS | {CONFIG_KEY}


def checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(tensor_buffer(t))
    return h.hexdigest()


# Finest first: two fingerprints taken in different precisions are compared in the coarser one.
_PRECISION = ("torch.float64", "torch.float32", "torch.float16", "torch.bfloat16")


def _combined(identities: dict[str, WeightIdentity], dtype: str | None = None) -> str | None:
    h = hashlib.sha256()
    for name in sorted(identities):
        ident = identities[name]
        digest = ident.sha256 if dtype is None else ident.sha256_as.get(dtype)
        if digest is None:
            return None
        h.update(name.encode())
        h.update(digest.encode())
    return h.hexdigest()


def fingerprint(architecture: str, identities: dict[str, WeightIdentity]) -> dict[str, Any]:
    """Identity of the base: architecture, target shapes and hashes of the targeted weights.

    Built from per-weight identities, so a base whose float weight is gone (quantized, or
    rewritten by a pissa init) still names it, and in several precisions, so the same base
    loaded in bf16 is recognised.
    """
    dtypes = {d for ident in identities.values() for d in ident.sha256_as}
    return {
        "architecture": architecture,
        "shapes": {n: list(i.shape) for n, i in sorted(identities.items())},
        "dtypes": sorted({i.dtype for i in identities.values()}),
        "weights_sha256": _combined(identities),
        "weights_sha256_as": {d: _combined(identities, d) for d in sorted(dtypes)},
    }


def fingerprint_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """A sentence saying how the saved fingerprint differs from the current base's, or None."""
    if saved.get("architecture") != current["architecture"]:
        return f"architecture {saved.get('architecture')!r} != {current['architecture']!r}"
    if saved.get("shapes") != current["shapes"]:
        return "target shapes differ"
    now, then = set(current["dtypes"]), set(saved.get("dtypes") or [])
    if not then or then == now:
        same = saved.get("weights_sha256") == current["weights_sha256"]
        where = ""
    else:
        # Compare in the coarsest precision involved: casting finer weights down reproduces it.
        coarse = max(now | then, key=lambda d: _PRECISION.index(d) if d in _PRECISION else 99)
        theirs = (saved.get("weights_sha256_as") or {}).get(coarse)
        same = theirs is not None and theirs == current["weights_sha256_as"].get(coarse)
        where = f" (compared in {coarse}: saved on {sorted(then)}, loading onto {sorted(now)})"
    if not same:
        return f"the targeted base weights differ (same shapes, different values){where}"
    return None


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file ``.<name>.<random>.tmp`` next to ``path``, created with the usual permissions
    (0666 less the umask, like any file the user writes; ``mkstemp`` would make it 0600)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: could not create a temporary file for {path.name}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
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
    """Tensors and metadata of a safetensors file; any corruption becomes an AdapterFileError.

    The layout is validated by ``parse_header`` before a byte is decoded, and a file that
    carries lorakit metadata must carry all of it, with a matching content checksum.
    """
    if not path.is_file():
        raise AdapterFileError(f"{path}: adapter_model.safetensors not found")
    data = read_file(path)
    entries, metadata = parse_header(data, path)
    decoded = decode_tensors(data, entries, path)
    tensors = decoded.tensors
    if not decoded.all_finite():
        key = next(k for k, t in tensors.items() if not torch.isfinite(t).all())
        raise AdapterFileError(f"{path}: tensor {key!r} holds NaN or Inf values")
    _check_lorakit_metadata(metadata, decoded.content_checksum, path)
    return tensors, metadata


@dataclass(frozen=True)
class DecodedTensors:
    """A file's tensors and how they were decoded: as views of the file buffer (``zero_copy``)
    or as copies made by the safetensors library."""

    tensors: dict[str, torch.Tensor]
    zero_copy: bool
    data: bytearray
    entries: list[TensorEntry]

    def all_finite(self) -> bool:
        whole = region_all_finite(self.data, self.entries) if self.zero_copy else None
        return _all_finite(self.tensors) if whole is None else whole

    def content_checksum(self) -> str:
        """``checksum(self.tensors)``, from the file's bytes where the tensors are views of them."""
        return file_checksum(self.data, self.entries) if self.zero_copy else checksum(self.tensors)


def decode_tensors(data: bytearray, entries: list[TensorEntry], path: Path) -> DecodedTensors:
    """The tensors of a file ``parse_header`` validated: views of ``data`` where possible."""
    if views_possible(data, entries):
        return DecodedTensors(tensor_views(data, entries), True, data, entries)
    try:
        tensors = safetensors_load(bytes(data))
    except Exception as e:  # the layout was validated, so this is a library-level refusal
        raise AdapterFileError(f"{path}: not a readable safetensors file ({e})") from e
    described = {e.name: (e.dtype, e.shape) for e in entries}
    decoded = {k: (_ST_DTYPES.get(t.dtype), tuple(t.shape)) for k, t in tensors.items()}
    if described != decoded:
        raise AdapterFileError(f"{path}: decoded tensors do not match the header")
    return DecodedTensors(tensors, False, data, entries)


def _all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    """One check per dtype over all tensors at once (a check per tensor cost more than reading
    the file: an adapter on every attention projection has hundreds of small tensors)."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors.values():
        if t.is_floating_point():
            by_dtype.setdefault(t.dtype, []).append(t.reshape(-1))
    return all(bool(torch.isfinite(torch.cat(flat)).all()) for flat in by_dtype.values())


_ST_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64"}


def _check_lorakit_metadata(
    metadata: dict[str, str], content_checksum: Callable[[], str], path: Path
) -> None:
    """A lorakit file has every lorakit key and a matching checksum; a PEFT file has none."""
    ours = {k for k in metadata if k.startswith("lorakit")}
    if not ours:
        warnings.warn(
            f"{path}: no lorakit content checksum (saved by PEFT?): corruption of the tensor "
            "data cannot be detected",
            stacklevel=5,
        )
        return
    unknown = sorted(ours - LORAKIT_KEYS)
    if unknown:
        raise AdapterFileError(f"{path}: unknown metadata key {unknown[0]!r}: corrupt header")
    missing = sorted(REQUIRED_KEYS - ours)
    if missing:
        raise AdapterFileError(f"{path}: lorakit metadata {missing[0]!r} is missing: corrupt header")
    if metadata[CHECKSUM_KEY] != content_checksum():
        raise AdapterFileError(f"{path}: content checksum mismatch: the file is corrupt")


def parse_json_metadata(metadata: dict[str, str], key: str, path: Path) -> Any:
    if key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as e:
        raise AdapterFileError(f"{path}: metadata {key!r} is not valid JSON ({e.msg})") from e
