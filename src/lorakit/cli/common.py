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
from lorakit.training.config import RunConfig
from lorakit.training.config_io import load_config


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


def read_input(spec: str, text_field: str) -> list[Record]:
    """Records from a data file, or from stdin ('-'): JSON objects or plain text, one per line."""
    if spec != "-":
        return read_records(spec)
    out: list[Record] = []
    for lineno, line in enumerate(sys.stdin.read().splitlines(), start=1):
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
