"""Helpers shared by the subcommands: config loading, adapter location, input records."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lorakit.data.readers import Record, read_records
from lorakit.errors import AdapterFileError, DataError, LorakitError
from lorakit.runconfig.schema import RunConfig
from lorakit.runconfig.yaml_io import load_config


def add_config_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument(
        "config",
        nargs="?" if optional else None,
        metavar="CONFIG.yaml",
        help="run config (YAML)" + (" (default: the config stored with --adapter)" if optional else ""),
    )
    p.add_argument(
        "overrides",
        nargs="*",
        type=utf8_text,
        metavar="key.sub=value",
        help="override config keys, e.g. train.lr=1e-4 lora.r=4 data.max_length=64",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig | None:
    if args.config is None:
        return None
    return load_config(args.config, args.overrides)


def adapter_dir(args: argparse.Namespace, config: RunConfig | None) -> Path:
    if args.adapter:
        path = Path(args.adapter)
    elif config is not None:
        path = Path(config.output_dir) / "adapter"
    else:
        raise AdapterFileError("give --adapter DIR (or a config whose output_dir holds adapter/)")
    if not path.is_dir():
        raise AdapterFileError(f"adapter folder {path} not found (train first, or pass --adapter DIR)")
    return path


def utf8_text(value: str) -> str:
    """argparse ``type=`` for text options: refuse what is not UTF-8 (exit 2, option named).

    Python hands bytes that are not UTF-8 to the program as lone surrogates, which tokenizers
    reject with a TypeError; the user gets told which byte instead."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(value[e.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"character U+{code:04X}"
        raise argparse.ArgumentTypeError(
            f"not UTF-8 text ({byte} at position {e.start + 1}); re-encode it as UTF-8"
        ) from None
    return value


def decode_utf8(raw: bytes, where: str) -> str:
    """``raw`` as text (a UTF-8 byte-order mark is dropped), or a DataError naming line and byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{where}, line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); re-encode it as UTF-8, "
            "e.g. iconv -f latin1 -t utf-8"
        ) from None


def read_stdin_text() -> str:
    """All of stdin as UTF-8 text; other encodings are refused with the line named."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return decode_utf8(buffer.read(), "stdin")
    text = sys.stdin.read()  # a text stream without bytes underneath (tests, embedding programs)
    return decode_utf8(text.encode("utf-8", "surrogateescape"), "stdin")


def read_input(spec: str, text_field: str) -> list[Record]:
    """Records from a data file, or from stdin ('-'): JSON objects or plain text, one per line."""
    if spec != "-":
        return read_records(spec)
    out: list[Record] = []
    for lineno, line in enumerate(read_stdin_text().splitlines(), start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"stdin, line {lineno}: malformed JSON: {e.msg}") from None
        else:
            out.append({text_field: line})
    if not out:
        raise DataError("stdin: no input lines")
    return out


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def check_new_folder(out: Path) -> None:
    """Refuse, before any heavy work, an output folder that already holds something."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LorakitError(f"--out {out} exists and is not empty; choose a new folder")


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Write into a hidden sibling, then rename it to ``out``: a failure leaves no half folder."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        out.rmdir()
    tmp.rename(out)
