"""Line-aligned parallel text (Moses style): ``<stem>.en`` and ``<stem>.de``, line i of one
translating line i of the other, read as records {"en": ..., "de": ...}."""

from __future__ import annotations

from pathlib import Path

from lorakit.data.readers import Record
from lorakit.errors import DataError


def read_parallel(stem: str | Path, suffixes: list[str]) -> list[Record]:
    """One record per line number, with one field per suffix. Errors name the file."""
    columns: dict[str, list[str]] = {}
    for suffix in suffixes:
        path = Path(f"{stem}.{suffix}")
        if not path.is_file():
            raise DataError(f"parallel data file {path} not found (data.parallel_suffixes = {suffixes})")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        columns[suffix] = text.rstrip("\n").split("\n") if text.strip() else []
    counts = {s: len(lines) for s, lines in columns.items()}
    if len(set(counts.values())) != 1:
        shown = ", ".join(f"{stem}.{s}: {n}" for s, n in counts.items())
        raise DataError(f"parallel files have different line counts ({shown}); line i must align")
    n = next(iter(counts.values()))
    if n == 0:
        raise DataError(f"{stem}.{suffixes[0]}: the dataset is empty (no lines)")
    return [{s: columns[s][i].strip() for s in suffixes} for i in range(n)]
