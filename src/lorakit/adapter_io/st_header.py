"""Strict validation of a safetensors file's layout before any byte of it is decoded.

The format: an unsigned 64-bit little-endian length ``n``, then ``n`` bytes of UTF-8 JSON (an
object mapping tensor names to ``{"dtype", "shape", "data_offsets"}`` plus an optional
``"__metadata__"`` object of strings), then the data region. Offsets are relative to the data
region; lorakit requires the tensors to tile it exactly (no gaps, no overlaps, no trailing
bytes), which is what every safetensors writer produces. A file that passes here is safe to
hand to the safetensors library, and any damage to its layout is reported in words.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.errors import AdapterFileError

# Bytes per element of every dtype the format defines (sub-byte float types excluded).
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
# Adapter weights are floating point; anything else in an adapter file is damage.
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
# The safetensors library's own limit on the header.
MAX_HEADER_BYTES = 100_000_000
METADATA = "__metadata__"
_ENTRY_FIELDS = {"dtype", "shape", "data_offsets"}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it; offsets are absolute within the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def parse_header(data: bytes, path: Path) -> tuple[list[TensorEntry], dict[str, str]]:
    """The tensor entries (in file order) and metadata of a safetensors file held in ``data``.

    Raises AdapterFileError naming ``path`` and the first problem found.
    """
    if len(data) < 8:
        raise AdapterFileError(f"{path}: truncated: {len(data)} bytes, too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n < 2 or n > MAX_HEADER_BYTES or n > len(data) - 8:
        raise AdapterFileError(
            f"{path}: header length {n} is impossible for a file of {len(data)} bytes "
            "(truncated or corrupt file)"
        )
    header = _decode_json(data[8 : 8 + n], path)
    metadata = _metadata(header.pop(METADATA, {}), path)
    start = 8 + n
    entries = [_entry(name, value, start, path) for name, value in header.items()]
    _check_tiling(entries, start, len(data), path)
    return entries, metadata


def _decode_json(raw: bytes, path: Path) -> dict[str, Any]:
    def reject_constant(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("duplicate key")
        return out

    try:
        header = json.loads(
            raw.decode("utf-8"), parse_constant=reject_constant, object_pairs_hook=no_duplicates
        )
    except UnicodeDecodeError as e:
        raise AdapterFileError(f"{path}: header is not UTF-8 (byte {e.start}): corrupt file") from e
    except (ValueError, RecursionError) as e:
        raise AdapterFileError(f"{path}: header is not valid JSON ({e}): corrupt file") from e
    if not isinstance(header, dict):
        raise AdapterFileError(f"{path}: header is a JSON {type(header).__name__}, expected an object")
    return header


def _metadata(value: Any, path: Path) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise AdapterFileError(f"{path}: header {METADATA} must map strings to strings: corrupt file")
    return value


def _entry(name: str, value: Any, start: int, path: Path) -> TensorEntry:
    where = f"{path}: header entry {name!r}"
    if not name:
        raise AdapterFileError(f"{path}: header has a tensor with an empty name")
    if not isinstance(value, dict) or set(value) != _ENTRY_FIELDS:
        fields = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise AdapterFileError(f"{where}: expected fields {sorted(_ENTRY_FIELDS)}, found {fields}")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise AdapterFileError(f"{where}: unknown dtype {dtype!r}")
    if dtype not in FLOAT_DTYPES:
        allowed = sorted(FLOAT_DTYPES)
        raise AdapterFileError(f"{where}: dtype {dtype} is not a float type (allowed: {allowed})")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise AdapterFileError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise AdapterFileError(f"{where}: data_offsets {offsets!r} is not a pair of non-negative integers")
    begin, end = offsets
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if end < begin or end - begin != expected:
        raise AdapterFileError(
            f"{where}: data_offsets {offsets} span {end - begin} bytes, but shape {shape} of {dtype} "
            f"needs {expected}"
        )
    return TensorEntry(name, dtype, tuple(shape), start + begin, start + end)


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_tiling(entries: list[TensorEntry], start: int, size: int, path: Path) -> None:
    """The tensors must cover the data region exactly once, in some order."""
    position = start
    for e in sorted(entries, key=lambda e: (e.begin, e.end)):
        if e.begin != position:
            problem = "overlaps the previous tensor" if e.begin < position else "leaves a gap before it"
            raise AdapterFileError(
                f"{path}: data offsets of {e.name!r} are inconsistent: it {problem} (corrupt header)"
            )
        if e.end > size:
            raise AdapterFileError(
                f"{path}: truncated: tensor {e.name!r} ends at byte {e.end}, the file has {size} bytes"
            )
        position = e.end
    if position != size:
        raise AdapterFileError(
            f"{path}: {size - position} trailing bytes after the last tensor (appended data or a "
            "corrupt header)"
        )
