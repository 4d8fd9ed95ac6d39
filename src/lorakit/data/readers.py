"""Reading records (one dict per example) from the file formats users have."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorakit.errors import DataError, MissingExtra
from lorakit.extras import missing_message

Record = dict[str, Any]
FORMATS = ".jsonl .json .csv .tsv .parquet .conll (CoNLL), or a saved Hugging Face datasets folder"


def read_records(path: str | Path) -> list[Record]:
    """All records of a data file or saved HF datasets folder. Errors name the file (and line)."""
    p = Path(path)
    if p.is_dir():
        records = _read_hf_dir(p)
    elif not p.exists():
        raise DataError(f"data file {p} not found")
    else:
        reader = _READERS.get(p.suffix.lower())
        if reader is None:
            raise DataError(f"{p}: unsupported file type {p.suffix!r}; supported: {FORMATS}")
        records = reader(p)
    if not records:
        raise DataError(f"{p}: the dataset is empty (no records)")
    return records


def _read_text(p: Path) -> str:
    """The file as UTF-8 text; a byte-order mark (Excel's "CSV UTF-8") is dropped."""
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _read_jsonl(p: Path) -> list[Record]:
    out = []
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}, line {lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{p}, line {lineno}: expected a JSON object, got {type(obj).__name__}")
        out.append(obj)
    return out


def _read_json(p: Path) -> list[Record]:
    try:
        obj = json.loads(_read_text(p))
    except json.JSONDecodeError as e:
        raise DataError(f"{p}, line {e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if isinstance(obj, dict) and obj and all(isinstance(v, list) for v in obj.values()):
        lengths = {len(v) for v in obj.values()}
        if len(lengths) != 1:
            raise DataError(f"{p}: columns have different lengths {sorted(lengths)}")
        keys = list(obj)
        obj = [dict(zip(keys, row, strict=True)) for row in zip(*obj.values(), strict=True)]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError(f"{p}: expected a list of objects, a {{column: list}} mapping or {{'data': [...]}}")
    return obj


def _read_delimited(p: Path, delimiter: str) -> list[Record]:
    text = _read_text(p)
    # TSV corpora (e.g. SST-2) contain bare quotes that are not CSV quoting.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    rows = csv.reader(text.splitlines(), delimiter=delimiter, quoting=quoting)
    try:
        header = next(rows)
    except StopIteration:
        return []
    out = []
    for lineno, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"{p}, line {lineno}: {len(row)} columns, the header has {len(header)}")
        out.append(dict(zip(header, row, strict=True)))
    return out


def _read_conll(p: Path) -> list[Record]:
    """Whitespace-separated token ... tag lines; blank lines end sentences; -DOCSTART- skipped."""
    out: list[Record] = []
    tokens: list[str] = []
    tags: list[str] = []
    for lineno, line in enumerate(_read_text(p).splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens:
                out.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
            continue
        if len(parts) < 2:
            raise DataError(f"{p}, line {lineno}: expected 'token ... tag', got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[-1])
    if tokens:
        out.append({"tokens": tokens, "tags": tags})
    return out


def _arrow_table_records(table: Any) -> list[Record]:
    return table.to_pylist()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise MissingExtra(missing_message("pyarrow")) from None
    return pyarrow


def _read_parquet(p: Path) -> list[Record]:
    pa = _pyarrow()
    try:
        return _arrow_table_records(pa.parquet.read_table(str(p)))
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{p}: not a readable parquet file ({e})") from None


def _read_hf_dir(p: Path) -> list[Record]:
    """A folder written by datasets' ``Dataset.save_to_disk`` (arrow stream files + state.json)."""
    state = p / "state.json"
    if not state.is_file():
        raise DataError(
            f"{p} is a folder but not a saved Hugging Face dataset (no state.json); "
            "for a DatasetDict pass the split folder, e.g. data/train"
        )
    try:
        files = [f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{state}: unreadable dataset state ({e})") from None
    pa = _pyarrow()
    out: list[Record] = []
    for name in files:
        try:
            with pa.memory_map(str(p / name)) as src:
                out.extend(_arrow_table_records(pa.ipc.open_stream(src).read_all()))
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{p / name}: not a readable arrow file ({e})") from None
    return out


_READERS: dict[str, Callable[[Path], list[Record]]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": lambda p: _read_delimited(p, ","),
    ".tsv": lambda p: _read_delimited(p, "\t"),
    ".parquet": _read_parquet,
    ".conll": _read_conll,
    ".txt": _read_conll,
}


def require_field(record: Record, field: str, source: str, index: int) -> Any:
    """``record[field]`` or a DataError naming the file, the record and the fields it has."""
    if field not in record:
        raise DataError(
            f"{source}, record {index + 1}: missing field {field!r} (fields present: {sorted(record)}); "
            "set the matching data.*_field key in the config"
        )
    if record[field] is None:
        raise DataError(f"{source}, record {index + 1}: field {field!r} is null (no value)")
    return record[field]
