"""Reading a YAML run config with dotted overrides; errors that name the key path."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from lorakit.adapter_io.integrity import atomic_write_text
from lorakit.config import LoraConfigError
from lorakit.errors import ConfigError
from lorakit.runconfig.schema import PATH_KEYS, RunConfig

# Names users bring from PEFT / other tools, mapped to lorakit's keys.
SYNONYMS = {
    "rank": "r",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "target_modules": "targets",
    "learning_rate": "lr",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "gradient_accumulation_steps": "grad_accum",
    "per_device_train_batch_size": "batch_size",
    "warmup": "warmup_ratio",
    "dataset": "data",
}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.sub=value`` -> (["key", "sub"], parsed YAML value)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"override {text!r} is not UTF-8 text; re-encode it as UTF-8") from None
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({e})") from e
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty key segment")
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            path = ".".join(parts[: i + 1])
            raise ConfigError(f"override {'.'.join(parts)}: {path} is {child!r}, not a section")
        node = child
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read ``path`` (or start empty), apply ``key.sub=value`` overrides, validate.

    Relative paths in the file are made absolute against the file's folder (``config_paths``);
    paths in overrides stay as given (relative to the current directory).
    """
    data, written = read_config_yaml(path) if path is not None else ({}, {})
    overridden: list[list[str]] = []
    for text in overrides or []:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
        overridden.append(parts)
    config = validate_config(data, source=str(path) if path else "config", overridden=overridden)
    kept = {k: v for k, v in written.items() if ["data", k] not in overridden and ["data"] not in overridden}
    config.data.remember_written(kept)
    return config


def read_config_yaml(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A config file's mapping with its relative paths made absolute against the file's folder.

    Returns the mapping and the data paths as the file wrote them (for error messages). Data
    files (``data.train`` / ``validation`` / ``test``) are always read from the config's folder;
    ``model`` is when that folder holds it (otherwise it stays an alias, hub id or a path
    relative to the current directory). ``output_dir`` stays relative to the current directory.
    """
    data = read_yaml(path)
    base = Path(path).absolute().parent
    written: dict[str, str] = {}
    section = data.get("data")
    if isinstance(section, dict):
        for key in PATH_KEYS:
            value = section.get(key)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                written[key] = value
                section[key] = os.path.normpath(base / value)
    model = data.get("model")
    if isinstance(model, str) and model and not Path(model).expanduser().is_absolute():
        candidate = base / model
        if candidate.exists():
            data["model"] = os.path.normpath(candidate)
    return data, written


def validate_config(
    data: dict[str, Any], source: str = "config", overridden: list[list[str]] | None = None
) -> RunConfig:
    """Validate a config mapping; each problem is blamed on ``source`` (the file) or, when its key
    was set by a ``key.sub=value`` override (``overridden``), on the command line."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_sources(e, source, overridden or [])) from None


def format_sources(err: ValidationError, source: str, overridden: list[list[str]]) -> str:
    from_line, from_file = [], []
    for loc, line in validation_lines(err):
        by_override = any(loc[: len(parts)] == parts for parts in overridden if parts)
        (from_line if by_override else from_file).append(line)
    blocks = []
    for where, lines in (("command-line override", from_line), (source, from_file)):
        if lines:
            blocks.append(f"{where}: {_join(lines)}")
    return "\n".join(blocks)


def _join(lines: list[str]) -> str:
    return lines[0] if len(lines) == 1 else "\n  " + "\n  ".join(lines)


# pydantic names the member of a union it tried (``str``, ``list[str]``) inside an error's location.
_UNION_TAG = re.compile(r"str|int|float|bool|none|\w+\[.*\]")


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: key path, bad value, what is allowed (and a suggestion for typos).

    The errors pydantic reports for each member of a union (``targets: list[str] | str``) are one
    problem of one key, so they make one line.
    """
    return _join([line for _, line in validation_lines(err)])


def validation_lines(err: ValidationError) -> list[tuple[list[str], str]]:
    """(key path, message) per problem."""
    grouped: dict[tuple[str, ...], list[Any]] = {}
    for item in _expanded(err.errors()):
        loc = tuple(str(x) for x in item["loc"] if not _UNION_TAG.fullmatch(str(x)))
        grouped.setdefault(loc, []).append(item)
    lines: list[tuple[list[str], str]] = []
    for loc_tuple, items in grouped.items():
        loc = list(loc_tuple)
        item = items[0]
        path = ".".join(loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            text = f"unknown key {path}{_suggest(loc)}"
        elif kind == "missing":
            text = f"missing required key {path}"
        elif kind == "literal_error":
            allowed = item.get("ctx", {}).get("expected", "")
            text = f"{path} = {item['input']!r} is invalid; allowed values: {allowed}"
        elif kind == "value_error" and not loc:
            text = item["msg"].removeprefix("Value error, ")
        else:
            msg = " or ".join(dict.fromkeys(i["msg"].removeprefix("Value error, ") for i in items))
            text = f"{path} = {item.get('input')!r} is invalid: {msg}"
        lines.append((loc, text))
    return lines


def _expanded(items: list[Any]) -> list[Any]:
    """The records of a nested ``LoraConfig`` (its own constructor reports them as one error)
    put back under their key path, e.g. (lora, r)."""
    out = []
    for item in items:
        inner = item.get("ctx", {}).get("error")
        if item["type"] == "value_error" and isinstance(inner, LoraConfigError):
            out.extend({**sub, "loc": (*item["loc"], *sub["loc"])} for sub in inner.problems)
        else:
            out.append(item)
    return out


def _suggest(loc: list[str]) -> str:
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        # An optional section (``quantize: QuantSection | None``) suggests from its section type.
        found = [
            a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not found:
            return ""
        model = found[0]
    bad = loc[-1]
    names = list(model.model_fields)
    prefix = ".".join([*loc[:-1], ""])
    if SYNONYMS.get(bad) in names:
        return f" (did you mean {prefix}{SYNONYMS[bad]}?)"
    close = difflib.get_close_matches(bad, names, n=3, cutoff=0.6)
    if close:
        return f" (did you mean {' or '.join(prefix + c for c in close)}?)"
    return f"; allowed keys here: {', '.join(names)}"


def save_config(config: RunConfig, path: Path) -> None:
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    atomic_write_text(path, text)
