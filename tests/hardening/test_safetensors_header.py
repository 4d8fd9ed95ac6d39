"""``parse_header``: every layout defect of a safetensors file is named before decoding."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save

from lorakit.adapter_io.st_header import parse_header
from lorakit.errors import AdapterFileError

P = Path("adapter_model.safetensors")


def _file(header: dict[str, Any], body: bytes, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def _good() -> tuple[dict[str, Any], bytes]:
    header = {
        "__metadata__": {"k": "v"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
        "empty": {"dtype": "F16", "shape": [0, 5], "data_offsets": [32, 32]},
    }
    return header, bytes(32)


def test_library_output_and_hand_built_file_parse() -> None:
    data = save({"x": torch.ones(3, 2), "y": torch.zeros(5, dtype=torch.float16)}, metadata={"m": "1"})
    entries, meta = parse_header(data, P)
    assert meta == {"m": "1"}
    assert {e.name: (e.dtype, e.shape) for e in entries} == {"x": ("F32", (3, 2)), "y": ("F16", (5,))}
    header, body = _good()
    entries, meta = parse_header(_file(header, body), P)
    assert [e.name for e in entries] == ["a", "b", "empty"] and meta == {"k": "v"}


def _edited(edit: Any) -> bytes:
    header, body = _good()
    result = edit(header, body)
    return result if isinstance(result, bytes) else _file(header, body)


CASES = {
    "too short": (lambda h, b: b"\x01\x00", "too short"),
    "length zero": (lambda h, b: _file(h, b, 0), "header length 0"),
    "length past end": (lambda h, b: _file(h, b, 10**6), "impossible"),
    "length 2^64-1": (lambda h, b: _file(h, b, 2**64 - 1), "impossible"),
    "not utf8": (lambda h, b: struct.pack("<Q", 4) + b"\xff\xfe{}" + b, "not UTF-8"),
    "not json": (lambda h, b: struct.pack("<Q", 4) + b"{x}:" + b, "not valid JSON"),
    "json list": (lambda h, b: _file([], b), "expected an object"),  # type: ignore[arg-type]
    "duplicate key": (
        lambda h, b: (
            struct.pack("<Q", 60) + b'{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":1}' + b
        ),
        "duplicate key",
    ),
    "NaN constant": (lambda h, b: h["a"].update(shape=[float("nan")]), "not valid JSON"),
    "int dtype": (lambda h, b: h["a"].update(dtype="I32"), "not a float type"),
    "unknown dtype": (lambda h, b: h["a"].update(dtype="F33"), "unknown dtype"),
    "list dtype": (lambda h, b: h["a"].update(dtype=["F32"]), "unknown dtype"),
    "negative dim": (lambda h, b: h["a"].update(shape=[-2, -3]), "non-negative integers"),
    "bool dim": (lambda h, b: h["a"].update(shape=[True, 3]), "non-negative integers"),
    "float dim": (lambda h, b: h["a"].update(shape=[2.0, 3]), "non-negative integers"),
    "huge shape": (lambda h, b: h["a"].update(shape=[2**40, 2**40]), "needs"),
    "size mismatch": (lambda h, b: h["a"].update(shape=[3, 3]), "needs"),
    "reversed offsets": (lambda h, b: h["b"].update(data_offsets=[32, 24]), "span"),
    "three offsets": (lambda h, b: h["a"].update(data_offsets=[0, 12, 24]), "pair"),
    "extra field": (lambda h, b: h["a"].update(extra=1), "expected fields"),
    "entry not object": (lambda h, b: h.update(a=5), "expected fields"),
    "gap": (lambda h, b: h["b"].update(data_offsets=[26, 34]), "gap"),
    "overlap": (lambda h, b: h["b"].update(data_offsets=[20, 28]), "overlaps"),
    "beyond end": (lambda h, b: _file(h, b[:-4]), "truncated"),
    "trailing": (lambda h, b: _file(h, b + b"\x00"), "trailing bytes"),
    "entry deleted": (lambda h, b: h.pop("a"), "gap"),
    "metadata not strings": (lambda h, b: h["__metadata__"].update(k=5), "strings to strings"),
    "metadata a list": (lambda h, b: h.update(__metadata__=[]), "strings to strings"),
    "deep nesting": (lambda h, b: struct.pack("<Q", 100000) + b"[" * 100000 + b, "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_defect_is_refused_with_its_name(name: str) -> None:
    edit, expected = CASES[name]
    with pytest.raises(AdapterFileError) as info:
        parse_header(_edited(edit), P)
    message = str(info.value)
    assert message.startswith(str(P)), message
    assert expected in message, message
