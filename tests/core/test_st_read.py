"""Reading adapter files as zero-copy views (adapter_io.st_read): the same tensors, checksum and
refusals as decoding with the safetensors library, which remains the path for files whose
tensors cannot be views (a misaligned tensor, a big-endian host)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lorakit.adapter_io import st_read
from lorakit.adapter_io.integrity import (
    CHECKSUM_KEY,
    FINGERPRINT_KEY,
    SCALING_KEY,
    checksum,
    decode_tensors,
    read_safetensors,
    safetensors_payload,
)
from lorakit.adapter_io.st_header import parse_header
from lorakit.digest import tensor_bytes
from lorakit.errors import AdapterFileError

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16, "f64": torch.float64}
_ST_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def _tensors(kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    dtypes = list(DTYPES.values()) if kind == "mixed" else [DTYPES[kind]] * 4
    shapes = [(3, 5), (7,), (2, 0, 4), ()]  # a 0-element tensor and a scalar among them
    return {
        f"t{i}.weight": torch.randn(s, generator=g).to(d)
        for i, (s, d) in enumerate(zip(shapes, dtypes, strict=True))
    }


def _metadata(tensors: dict[str, torch.Tensor]) -> dict[str, str]:
    return {CHECKSUM_KEY: checksum(tensors), FINGERPRINT_KEY: "{}", SCALING_KEY: "1.0"}


def _saved(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(safetensors_payload(tensors, _metadata(tensors)))
    return path


def _misaligned(tmp_path: Path, tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A hand-built file, tensors in the given order: an F16 tensor of 3 elements (6 bytes)
    puts the F32 tensor after it at an address that is not a multiple of 4."""
    if tensors is None:
        tensors = {"h": torch.tensor([1.5, -2.0, 3.25], dtype=torch.float16), "w": torch.tensor([0.5, 7.0])}
    header: dict[str, object] = {"__metadata__": _metadata(tensors)}
    body = b""
    for name, t in tensors.items():
        raw = tensor_bytes(t)
        header[name] = {
            "dtype": _ST_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [len(body), len(body) + len(raw)],
        }
        body += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path


def _zero_copy(path: Path) -> bool:
    data = st_read.read_file(path)
    return decode_tensors(data, parse_header(data, path)[0], path).zero_copy


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for k, t in want.items():
        assert got[k].dtype == t.dtype and got[k].shape == t.shape, k
        assert torch.equal(got[k], t), k


@pytest.mark.parametrize("kind", [*DTYPES, "mixed"])
def test_read_equals_the_library_and_the_saved_tensors(tmp_path: Path, kind: str) -> None:
    tensors = _tensors(kind)
    path = _saved(tmp_path, tensors)
    got, metadata = read_safetensors(path)
    _assert_same(got, load_file(str(path)))
    _assert_same(got, tensors)
    assert metadata == _metadata(tensors)
    if kind != "mixed":  # every file lorakit writes in one dtype is read without a copy
        assert _zero_copy(path)


@pytest.mark.parametrize("kind", [*DTYPES, "mixed"])
def test_file_checksum_equals_checksum_of_the_tensors(tmp_path: Path, kind: str) -> None:
    path = _saved(tmp_path, _tensors(kind))
    data = st_read.read_file(path)
    entries, _ = parse_header(data, path)
    assert st_read.file_checksum(data, entries) == checksum(load_file(str(path)))


def test_a_misaligned_tensor_is_decoded_by_the_library(tmp_path: Path) -> None:
    path = _misaligned(tmp_path)
    data = st_read.read_file(path)
    entries, _ = parse_header(data, path)
    assert not st_read.views_possible(data, entries)
    assert not _zero_copy(path)
    got, _ = read_safetensors(path)  # the checksum in the file matched, too
    _assert_same(got, load_file(str(path)))
    assert got["w"].tolist() == [0.5, 7.0] and got["h"].tolist() == [1.5, -2.0, 3.25]


def test_a_big_endian_host_decodes_with_the_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = _tensors("f32")
    path = _saved(tmp_path, tensors)
    monkeypatch.setattr(st_read, "LITTLE_ENDIAN", False)
    assert not _zero_copy(path)
    _assert_same(read_safetensors(path)[0], tensors)


def _poisoned(tensors: dict[str, torch.Tensor], key: str, value: float) -> dict[str, torch.Tensor]:
    out = {k: t.clone() for k, t in tensors.items()}
    out[key].view(-1)[-1] = value
    return out


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    ("layout", "zero_copy"), [("f32", True), ("bf16", True), ("mixed", True), ("misaligned", False)]
)
def test_a_non_finite_value_is_named_on_every_path(
    tmp_path: Path, layout: str, zero_copy: bool, value: float
) -> None:
    if layout == "misaligned":
        clean = {"h": torch.ones(3, dtype=torch.float16), "w": torch.ones(4), "z": torch.ones(2)}
        path = _misaligned(tmp_path, _poisoned(clean, "w", value))
        key = "w"
    else:
        tensors = _tensors(layout)
        key = sorted(tensors)[1]
        path = _saved(tmp_path, _poisoned(tensors, key, value))  # checksum matches: the values are bad
    assert _zero_copy(path) is zero_copy
    with pytest.raises(AdapterFileError, match=f"tensor '{key}' holds NaN or Inf values"):
        read_safetensors(path)


@pytest.mark.parametrize("kind", ["f32", "mixed"])
def test_read_tensors_are_writable_and_independent(tmp_path: Path, kind: str) -> None:
    tensors = _tensors(kind)
    path = _saved(tmp_path, tensors)
    got, _ = read_safetensors(path)
    written: set[str] = set()
    for key, t in got.items():
        assert t.device.type == "cpu" and t.is_contiguous() and not t.requires_grad
        t.fill_(42.0)
        written.add(key)
        for other, u in got.items():  # only the tensors written so far changed
            expected = torch.full_like(u, 42.0) if other in written else tensors[other]
            assert torch.equal(u, expected), (key, other)
    _assert_same(read_safetensors(path)[0], tensors)  # the file and a new read are untouched
