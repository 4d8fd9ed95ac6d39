"""Reading a growing ``metrics.jsonl`` from a byte offset: only the new complete lines.

The page keeps, per run, the offset it has read up to and the identity of the file; each poll
asks for what was appended since. A file that was replaced (a resumed run rewrites
metrics.jsonl atomically, so it gets a new inode) or that shrank is read again from the start
and flagged ``reset`` so the page drops what it had.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAX_CHUNK_BYTES = 1 << 20
"""At most this much of the file per answer; ``more`` tells the page to ask again at once."""
MAX_SMALL_FILE_BYTES = 16 << 20
"""summary.json, config.yaml and sweep files larger than this are not read."""


@dataclass(frozen=True)
class MetricsChunk:
    """Rows appended to a metrics file since an offset."""

    rows: list[dict[str, Any]]
    """Parsed complete lines (non-finite numbers become None; unreadable lines are skipped)."""
    offset: int
    """Byte offset to ask from next time."""
    file_id: str
    """Identity of the file read (device and inode); empty when the file does not exist yet."""
    reset: bool
    """The file is not the one the offset referred to: ``rows`` start from its beginning."""
    more: bool
    """More complete lines are already waiting past ``offset``."""


def file_identity(st: os.stat_result) -> str:
    return f"{st.st_dev}-{st.st_ino}"


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file and not a symlink.

    The page reads only what training wrote into the runs folder; a symlink planted there
    must not make it serve a file from elsewhere. Raises OSError otherwise.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise OSError(f"{path} is not a regular file")
    return f


def read_small(path: Path, limit: int = MAX_SMALL_FILE_BYTES) -> str | None:
    """The text of a small regular file (summary.json, config.yaml, ...); None if absent or odd."""
    try:
        with open_regular(path) as f:
            data = f.read(limit + 1)
        return data.decode("utf-8") if len(data) <= limit else None
    except (OSError, UnicodeDecodeError):
        return None


def read_since(path: Path, offset: int, file_id: str, max_bytes: int = MAX_CHUNK_BYTES) -> MetricsChunk:
    """Complete lines of ``path`` after byte ``offset`` of the file known as ``file_id``."""
    try:
        f = open_regular(path)
    except OSError:  # absent (not written yet), or not a regular file
        return MetricsChunk([], 0, "", reset=offset > 0 or bool(file_id), more=False)
    with f:
        st = os.fstat(f.fileno())
        ident = file_identity(st)
        reset = offset > 0 and (ident != file_id or offset > st.st_size)
        start = 0 if reset or ident != file_id else offset
        f.seek(start)
        chunk = f.read(max_bytes)
    end = chunk.rfind(b"\n")
    if end < 0:
        return MetricsChunk([], start, ident, reset, more=False)
    rows = parse_lines(chunk[: end + 1])
    new_offset = start + end + 1
    return MetricsChunk(
        rows, new_offset, ident, reset, more=new_offset < st.st_size and len(chunk) == max_bytes
    )


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    rows = []
    for line in data.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash, or garbage: skip it, keep going
        if isinstance(row, dict):
            rows.append(finite_json(row))
    return rows


def finite_json(value: Any) -> Any:
    """``value`` with NaN/Inf replaced by None (JSON has no such numbers; browsers reject them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_json(v) for v in value]
    return value
