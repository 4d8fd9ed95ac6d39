"""Random damage to an adapter folder: one mutation per case, described in words.

Each mutation takes a ``random.Random`` and the folder, changes the folder in place and returns
a short description. Nothing here imports torch, so the campaign driver stays light.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"

Mutation = Callable[[random.Random, Path], str]


def split(data: bytes) -> tuple[int, bytes, bytes]:
    """(header length, header bytes, data region) of a well-formed safetensors file."""
    (n,) = struct.unpack("<Q", data[:8])
    return n, data[8 : 8 + n], data[8 + n :]


def join(header: dict[str, Any], body: bytes, pad: bool = True) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _flip(data: bytes, lo: int, hi: int, rng: random.Random) -> tuple[bytes, int]:
    pos = rng.randrange(lo, hi)
    out = bytearray(data)
    out[pos] ^= 1 << rng.randrange(8)
    return bytes(out), pos


def st_header_bitflip(rng: random.Random, folder: Path) -> str:
    p = folder / WEIGHTS
    data = p.read_bytes()
    n, _, _ = split(data)
    out, pos = _flip(data, 8, 8 + n, rng)
    p.write_bytes(out)
    return f"bit flip in header at byte {pos}"


def st_data_bitflip(rng: random.Random, folder: Path) -> str:
    p = folder / WEIGHTS
    data = p.read_bytes()
    n, _, _ = split(data)
    out, pos = _flip(data, 8 + n, len(data), rng)
    p.write_bytes(out)
    return f"bit flip in data at byte {pos}"


def st_length_prefix(rng: random.Random, folder: Path) -> str:
    p = folder / WEIGHTS
    data = p.read_bytes()
    n, _, _ = split(data)
    size = len(data)
    choices = [0, 1, 7, n - 1, n + 1, n + 8, size - 8, size - 7, size, 2**31, 2**32, 2**63, 2**64 - 1]
    if rng.random() < 0.3:
        value = rng.randrange(2**64)
    elif rng.random() < 0.5:
        value = n ^ (1 << rng.randrange(64))
    else:
        value = rng.choice(choices)
    p.write_bytes(struct.pack("<Q", value) + data[8:])
    return f"header length prefix {n} -> {value}"


def st_truncate(rng: random.Random, folder: Path) -> str:
    p = folder / WEIGHTS
    data = p.read_bytes()
    cut = rng.randrange(0, len(data))
    p.write_bytes(data[:cut])
    return f"truncated to {cut} of {len(data)} bytes"


def st_append(rng: random.Random, folder: Path) -> str:
    p = folder / WEIGHTS
    data = p.read_bytes()
    k = rng.choice([1, 3, 4, 8, 64, 1000])
    extra = bytes(k) if rng.random() < 0.5 else rng.randbytes(k)
    p.write_bytes(data + extra)
    return f"appended {k} bytes"


def st_swap_tensor_data(rng: random.Random, folder: Path) -> str:
    """Exchange the bytes of two same-sized tensors, leaving the header as it was."""
    p = folder / WEIGHTS
    data = p.read_bytes()
    n, raw, body = split(data)
    header = json.loads(raw)
    sizes: dict[int, list[str]] = {}
    for k, v in header.items():
        if k != "__metadata__":
            b, e = v["data_offsets"]
            sizes.setdefault(e - b, []).append(k)
    groups = [g for g in sizes.values() if len(g) > 1]
    if not groups:
        return st_data_bitflip(rng, folder)
    a, b = rng.sample(rng.choice(groups), 2)
    (a0, a1), (b0, b1) = header[a]["data_offsets"], header[b]["data_offsets"]
    out = bytearray(body)
    out[a0:a1], out[b0:b1] = body[b0:b1], body[a0:a1]
    p.write_bytes(data[: 8 + n] + bytes(out))
    return f"swapped data of {a} and {b}"


_DTYPES = ["F16", "BF16", "F64", "F32", "I32", "I64", "U8", "I8", "BOOL", "F8_E4M3", "float32", "", 5, None]
_WEIRD = [None, True, 0, -1, 1, 2**40, 2**64, 1.5, "x", "", [], {}, [1], [0, 0], [-1, 2]]


def _edit_shape(rng: random.Random, shape: list[int]) -> Any:
    ops = [
        lambda s: s[::-1],
        lambda s: [s[0] + 1, *s[1:]],
        lambda s: [max(s[0] - 1, 0), *s[1:]],
        lambda s: [s[0] * 2, *s[1:-1], s[-1] // 2] if len(s) > 1 else [s[0] * 2],
        lambda s: [*s, 1],
        lambda s: [1, *s],
        lambda s: s[:-1],
        lambda s: [-s[0], *s[1:]],
        lambda s: [2**40, 2**40],
        lambda s: [2**62, 4],
        lambda s: [float(x) for x in s],
        lambda s: [str(x) for x in s],
        lambda s: [0, *s[1:]],
        lambda s: rng.choice(_WEIRD),
    ]
    return rng.choice(ops)(list(shape))


def _edit_offsets(rng: random.Random, off: list[int], header: dict[str, Any]) -> Any:
    b, e = off
    other = rng.choice([v for k, v in header.items() if k != "__metadata__"])["data_offsets"]
    k = rng.choice([1, 2, 4, 8, 64])
    ops = [
        lambda: [b + k, e + k],
        lambda: [b - k, e - k],
        lambda: [b, e + k],
        lambda: [b + k, e],
        lambda: [e, b],
        lambda: list(other),
        lambda: [b, 2**63],
        lambda: [-b - 1, e],
        lambda: [b, e, e],
        lambda: [float(b), float(e)],
        lambda: rng.choice(_WEIRD),
    ]
    return rng.choice(ops)()


def _edit_metadata(rng: random.Random, header: dict[str, Any]) -> str:
    meta = header.setdefault("__metadata__", {})
    keys = sorted(meta)
    op = rng.randrange(9)
    if op == 0 and keys:
        key = rng.choice(keys)
        del meta[key]
        return f"metadata {key} deleted"
    if op == 1 and keys:
        key = rng.choice(keys)
        value = list(meta[key])
        if value:
            i = rng.randrange(len(value))
            value[i] = rng.choice('0123456789abcdef{}[]":,x ')
        meta[key] = "".join(value)
        return f"metadata {key} char edited"
    if op == 2 and keys:
        key = rng.choice(keys)
        meta[key] = rng.choice([5, None, ["a"], {"a": "b"}, True])
        return f"metadata {key} set to a non-string"
    if op == 3:
        header["__metadata__"] = rng.choice([None, 5, "x", [], {}])
        return f"__metadata__ replaced by {header['__metadata__']!r}"
    if op == 4:
        meta[rng.choice(["lorakit.extra", "lorakit", "other", "format"])] = "1"
        return "metadata key added"
    if op == 5 and "lorakit.fingerprint" in meta:
        fp = json.loads(meta["lorakit.fingerprint"])
        fp[rng.choice(sorted(fp))] = rng.choice(_WEIRD)
        meta["lorakit.fingerprint"] = json.dumps(fp)
        return "fingerprint field replaced"
    if op == 6 and "lorakit.checksum" in meta:
        meta["lorakit.checksum"] = rng.choice(["", "0" * 64, meta["lorakit.checksum"].upper()])
        return "checksum replaced"
    if op == 7 and keys:
        key = rng.choice(keys)
        meta[key[:-1] + chr(ord(key[-1]) ^ 1)] = meta.pop(key)
        return f"metadata key {key} renamed"
    header.pop("__metadata__")
    return "__metadata__ removed"


def st_header_edit(rng: random.Random, folder: Path) -> str:
    """Edit the header JSON (dtype, shape, offsets, names, metadata) and rewrite the prefix."""
    p = folder / WEIGHTS
    data = p.read_bytes()
    _, raw, body = split(data)
    header = json.loads(raw)
    names = sorted(k for k in header if k != "__metadata__")
    key = rng.choice(names)
    entry = header[key]
    op = rng.randrange(10)
    if op == 0:
        entry["dtype"] = rng.choice(_DTYPES)
        what = f"dtype of {key} -> {entry['dtype']!r}"
    elif op == 1:
        entry["shape"] = _edit_shape(rng, entry["shape"])
        what = f"shape of {key} -> {entry['shape']!r}"
    elif op == 2:
        entry["data_offsets"] = _edit_offsets(rng, entry["data_offsets"], header)
        what = f"offsets of {key} -> {entry['data_offsets']!r}"
    elif op == 3:
        new = list(key)
        i = rng.randrange(len(new))
        new[i] = rng.choice("abcxyz._019/")
        header["".join(new)] = header.pop(key)
        what = f"key {key} renamed"
    elif op == 4 and len(names) > 1:
        other = rng.choice([n for n in names if n != key])
        header[key], header[other] = header[other], header[key]
        what = f"entries {key} and {other} swapped"
    elif op == 5:
        del header[key]
        what = f"entry {key} deleted"
    elif op == 6:
        entry[rng.choice(["extra", "dtype", "shape", "data_offsets"])] = rng.choice(_WEIRD)
        what = f"field of {key} set to a weird value"
    elif op == 7:
        header[key] = rng.choice(_WEIRD)
        what = f"entry {key} replaced by a non-object"
    else:
        what = _edit_metadata(rng, header)
    p.write_bytes(join(header, body, pad=rng.random() < 0.8))
    return what


_CONFIG_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2,
    4,
    8,
    16,
    10**9,
    10**30,
    0.5,
    -0.5,
    1e308,
    "x",
    "",
    "none",
    "all",
    "lora_only",
    "gaussian",
    "pissa",
    "all-linear",
    ".*",
    "(",
    [],
    ["classifier"],
    ["query"],
    ["ln_f"],
    [0],
    [1, 2],
    ["x", 1],
    {},
    {"query": 2},
    {"x": "y"},
    {".*": 16},
    [[[]]],
]


def cfg_edit(rng: random.Random, folder: Path) -> str:
    """Delete, retype or perturb one adapter_config.json field (or add an unknown one)."""
    p = folder / CONFIG
    cfg = json.loads(p.read_text())
    key = rng.choice(sorted(cfg))
    op = rng.randrange(5)
    if op == 0:
        del cfg[key]
        what = f"config field {key} deleted"
    elif op == 1 and key in ("r", "lora_alpha") and isinstance(cfg[key], (int, float)):
        cfg[key] = rng.choice([cfg[key] + 1, cfg[key] - 1, cfg[key] * 2, cfg[key] / 2, float(cfg[key])])
        what = f"config {key} -> {cfg[key]!r}"
    elif op == 1 and key in ("lora_dropout", "fan_in_fan_out", "inference_mode", "task_type"):
        cfg[key] = rng.choice([0.1, 0.5, 0.99, 1.0, -0.1, True, False, "CAUSAL_LM", "SEQ_CLS"])
        what = f"config {key} -> {cfg[key]!r}"
    elif op == 2:
        cfg[rng.choice(["r", "lora_alpha", "use_rslora", "alpha_pattern", "rank_pattern"])] = rng.choice(
            _CONFIG_VALUES
        )
        what = "scaling-related config field retyped"
    elif op == 3:
        cfg["unknown_field_" + str(rng.randrange(10))] = rng.choice(_CONFIG_VALUES)
        what = "unknown config field added"
    else:
        cfg[key] = rng.choice(_CONFIG_VALUES)
        what = f"config {key} -> {cfg[key]!r}"
    p.write_text(json.dumps(cfg))
    return what


def cfg_bytes(rng: random.Random, folder: Path) -> str:
    """Byte-level damage to adapter_config.json."""
    p = folder / CONFIG
    data = p.read_bytes()
    op = rng.randrange(4)
    if op == 0:
        out, pos = _flip(data, 0, len(data), rng)
        p.write_bytes(out)
        return f"config bit flip at byte {pos}"
    if op == 1:
        cut = rng.randrange(len(data))
        p.write_bytes(data[:cut])
        return f"config truncated to {cut} bytes"
    replacement = rng.choice([b"", b"[]", b"null", b"\xff\xfe{}", b'{"r": NaN}', b"[" * 100000, b"{}"])
    p.write_bytes(replacement)
    return f"config replaced by {replacement[:12]!r}"


def file_ops(rng: random.Random, folder: Path) -> str:
    """Missing, empty, wrong-kind or dangling files."""
    name = rng.choice([WEIGHTS, CONFIG])
    p = folder / name
    op = rng.randrange(4)
    if op == 0:
        p.unlink()
        return f"{name} deleted"
    if op == 1:
        p.write_bytes(b"")
        return f"{name} emptied"
    if op == 2:
        p.unlink()
        p.mkdir()
        return f"{name} replaced by a folder"
    p.unlink()
    p.symlink_to(folder / "does-not-exist")
    return f"{name} replaced by a dangling symlink"


MUTATIONS: dict[str, tuple[float, Mutation]] = {
    "header_bitflip": (3.0, st_header_bitflip),
    "data_bitflip": (3.0, st_data_bitflip),
    "length_prefix": (1.0, st_length_prefix),
    "truncate": (1.0, st_truncate),
    "append": (0.5, st_append),
    "swap_tensor_data": (0.5, st_swap_tensor_data),
    "header_edit": (3.0, st_header_edit),
    "config_edit": (2.0, cfg_edit),
    "config_bytes": (1.0, cfg_bytes),
    "file_ops": (0.5, file_ops),
}


def mutate(rng: random.Random, folder: Path) -> tuple[str, str]:
    """Apply one weighted random mutation; returns (mutation kind, description)."""
    names = list(MUTATIONS)
    kind = rng.choices(names, weights=[MUTATIONS[n][0] for n in names])[0]
    return kind, MUTATIONS[kind][1](rng, folder)


def copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
