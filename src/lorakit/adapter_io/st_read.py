"""Reading a safetensors file whose layout ``parse_header`` validated, without copying tensors.

The file is read once into a writable buffer; where the host is little-endian and every tensor
starts at an address aligned to its element size, the tensors are views of that buffer (disjoint
slices: each is an ordinary writable CPU tensor, independent of the others), the finite check
runs over the data region at once and the content checksum hashes the file's bytes directly.
Where that is not possible, ``views_possible`` says so and the caller decodes with the
safetensors library instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import sys
from pathlib import Path

import torch

from lorakit.adapter_io.st_header import DTYPE_SIZES, TensorEntry
from lorakit.errors import AdapterFileError

TORCH_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
# File bytes are tensor bytes only on a little-endian host (safetensors stores little-endian).
LITTLE_ENDIAN = sys.byteorder == "little"


def read_file(path: Path) -> bytearray:
    """The whole file in a writable buffer sized by ``fstat`` (a file that changed size while
    being read is read to its end all the same)."""
    try:
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(os.fstat(f.fileno()).st_size)
            del buf[_fill(f, buf) :]  # shrank since fstat
            buf += f.read()  # grew since fstat
    except OSError as e:
        raise AdapterFileError(f"{path}: cannot read the file ({e.strerror})") from e
    return buf


def _fill(f: io.FileIO, buf: bytearray) -> int:
    """Bytes read into ``buf`` until it is full or the file ends (a read may return less)."""
    filled = 0
    with memoryview(buf) as view:
        while filled < len(buf):
            n = f.readinto(view[filled:])
            if not n:
                break
            filled += n
    return filled


def views_possible(buf: bytearray, entries: list[TensorEntry]) -> bool:
    """Whether every tensor can be a view of ``buf``: little-endian host, each non-empty tensor
    at an address aligned to its element size (a file mixing dtypes can misalign them)."""
    if not LITTLE_ENDIAN:
        return False
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    return all((base + e.begin) % DTYPE_SIZES[e.dtype] == 0 for e in entries if e.end > e.begin)


def tensor_views(buf: bytearray, entries: list[TensorEntry]) -> dict[str, torch.Tensor]:
    """The tensors, in file header order, as views of ``buf`` (only where ``views_possible``)."""
    return {e.name: _view(buf, e) for e in entries}


def _view(buf: bytearray, e: TensorEntry) -> torch.Tensor:
    dtype = TORCH_DTYPES[e.dtype]
    if e.end == e.begin:  # frombuffer refuses a count of 0
        return torch.empty(e.shape, dtype=dtype)
    count = (e.end - e.begin) // DTYPE_SIZES[e.dtype]
    return torch.frombuffer(buf, dtype=dtype, count=count, offset=e.begin).view(e.shape)


def region_all_finite(buf: bytearray, entries: list[TensorEntry]) -> bool | None:
    """Whether every value in the data region is finite, checked as one view; None when the
    tensors do not share one dtype. Only where ``views_possible``.

    The entries tile the data region exactly (``parse_header``), so it holds exactly the
    tensors' elements. ``aminmax`` propagates NaN and exposes an infinity in min or max, so
    finite extremes mean finite values; it is one pass with no temporary tensor.
    """
    dtypes = {e.dtype for e in entries}
    if len(dtypes) > 1:
        return None
    begin = min((e.begin for e in entries), default=0)
    end = max((e.end for e in entries), default=0)
    if end == begin:
        return True
    (dtype,) = dtypes
    flat = torch.frombuffer(
        buf, dtype=TORCH_DTYPES[dtype], count=(end - begin) // DTYPE_SIZES[dtype], offset=begin
    )
    low, high = torch.aminmax(flat)
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def file_checksum(buf: bytearray, entries: list[TensorEntry]) -> str:
    """``integrity.checksum`` of the decoded tensors, hashed from the file's bytes (which are the
    tensors' bytes on a little-endian host): the same digest without a buffer per tensor."""
    h = hashlib.sha256()
    with memoryview(buf) as data:
        for e in sorted(entries, key=lambda e: e.name):
            h.update(f"{e.name}|{TORCH_DTYPES[e.dtype]}|{e.shape}|".encode())
            h.update(data[e.begin : e.end])
    return h.hexdigest()
