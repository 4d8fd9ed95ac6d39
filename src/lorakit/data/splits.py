"""Train / validation / test records from the data section of a run config."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.data.parallel import read_parallel
from lorakit.data.readers import Record, read_records
from lorakit.errors import DataError
from lorakit.runconfig.schema import DataSection

SPLITS = ("train", "validation", "test")


@dataclass
class Splits:
    """Records per split, with a human-readable source for error messages."""

    records: dict[str, list[Record]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What a person should be told about the data (e.g. how validation_split divided it)."""


def load_splits(data: DataSection, wanted: tuple[str, ...] = SPLITS) -> Splits:
    """Read the files the config names (only the splits in ``wanted``)."""
    out = Splits()
    need_train = "train" in wanted or ("validation" in wanted and data.validation_split)
    if need_train:
        if not data.train:
            raise DataError("data.train is not set: name a training file")
        out.records["train"] = _read(data, located(data, "train"))
        out.sources["train"] = data.train
    for split in ("validation", "test"):
        path = getattr(data, split)
        if split in wanted and path:
            out.records[split] = _read(data, located(data, split))
            out.sources[split] = path
    if data.validation_split and need_train:
        train, val = split_off(
            out.records["train"], data.validation_split, data.split_group_field, data.train
        )
        out.records["train"], out.records["validation"] = train, val
        out.sources["validation"] = f"{data.train} (validation_split={data.validation_split})"
        group = f", grouped by {data.split_group_field!r}" if data.split_group_field else ""
        out.notes.append(
            f"validation_split={data.validation_split}{group}: {len(train)} training and {len(val)} "
            f"validation records of {len(train) + len(val)} in {data.train}"
        )
    if data.max_train_samples and "train" in out.records:
        out.records["train"] = out.records["train"][: data.max_train_samples]
    for split in ("validation", "test"):
        if data.max_eval_samples and split in out.records:
            out.records[split] = out.records[split][: data.max_eval_samples]
    return out


def located(data: DataSection, key: str) -> str:
    """``data.<key>``, or a DataError naming where it was looked for.

    A path the config file wrote relative to its own folder names both candidates: that folder
    (where lorakit reads it) and the current directory (where a user may have meant it)."""
    path = getattr(data, key)
    if _exists(data, path):
        return path
    written = data.written_path(key)
    if written is None:
        raise DataError(f"data.{key}: data file {path} not found")
    here = Path(written).expanduser().absolute()
    other = (
        f"{here} (relative to the current directory) exists: write the path relative to the config "
        "file's folder, or absolute"
        if here.exists()
        else f"not at {here} (relative to the current directory) either"
    )
    raise DataError(
        f"data.{key} = {written!r} not found: looked for {path} (paths in a config file are relative to "
        f"the config file's folder); {other}"
    )


def _exists(data: DataSection, path: str) -> bool:
    """A data file, or for line-aligned parallel text, the stem's first file (train -> train.en)."""
    if data.parallel_suffixes:
        return Path(f"{path}.{data.parallel_suffixes[0]}").exists()
    return Path(path).exists()


def _read(data: DataSection, path: str) -> list[Record]:
    if data.parallel_suffixes:
        return read_parallel(path, data.parallel_suffixes)
    return read_records(path)


def split_off(
    records: list[Record], fraction: float, group_field: str | None, source: str
) -> tuple[list[Record], list[Record]]:
    """Deterministic hold-out by a hash of the group key (or record index): stable across runs."""
    train, val = [], []
    for i, rec in enumerate(records):
        if group_field is not None and group_field not in rec:
            raise DataError(f"{source}, record {i + 1}: missing data.split_group_field {group_field!r}")
        key = str(rec[group_field]) if group_field else str(i)
        bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
        (val if bucket < fraction else train).append(rec)
    if not train or not val:
        raise DataError(
            f"{source}: validation_split={fraction} leaves an empty split "
            f"({len(train)} train / {len(val)} validation records)"
        )
    return train, val


def resolve_split(data: DataSection, split: str) -> tuple[list[Record], str]:
    """Records for `lorakit eval --split`: a split name or a file path."""
    if split in SPLITS:
        s = load_splits(data, (split,))
        if split not in s.records:
            raise DataError(f"the config has no {split} data (set data.{split} or data.validation_split)")
        return s.records[split], s.sources[split]
    if data.parallel_suffixes:  # a stem: <split>.<suffix> per language
        return read_parallel(split, data.parallel_suffixes), split
    if not Path(split).exists():
        raise DataError(f"--split {split!r} is neither train/validation/test nor an existing file")
    return read_records(split), split
