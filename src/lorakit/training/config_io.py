"""Reading a YAML run config with dotted overrides; errors that name the key path."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from lorakit.adapter_io.integrity import atomic_write_text
from lorakit.errors import ConfigError
from lorakit.training.config import RunConfig

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
    """Read ``path`` (or start empty), apply ``key.sub=value`` overrides, validate."""
    data = read_yaml(path) if path is not None else {}
    for text in overrides or []:
        apply_override(data, *parse_override(text))
    return validate_config(data, source=str(path) if path else "config")


def validate_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e)}") from None


# pydantic names the member of a union it tried (``str``, ``list[str]``) inside an error's location.
_UNION_TAG = re.compile(r"str|int|float|bool|none|\w+\[.*\]")


def format_validation_error(err: ValidationError) -> str:
    """One line per problem: key path, bad value, what is allowed (and a suggestion for typos).

    The errors pydantic reports for each member of a union (``targets: list[str] | str``) are one
    problem of one key, so they make one line.
    """
    grouped: dict[tuple[str, ...], list[Any]] = {}
    for item in err.errors():
        loc = tuple(str(x) for x in item["loc"] if not _UNION_TAG.fullmatch(str(x)))
        grouped.setdefault(loc, []).append(item)
    lines = []
    for loc_tuple, items in grouped.items():
        loc = list(loc_tuple)
        item = items[0]
        path = ".".join(loc) or "(top level)"
        kind = item["type"]
        if kind == "extra_forbidden":
            lines.append(f"unknown key {path}{_suggest(loc)}")
        elif kind == "missing":
            lines.append(f"missing required key {path}")
        elif kind == "literal_error":
            allowed = item.get("ctx", {}).get("expected", "")
            lines.append(f"{path} = {item['input']!r} is invalid; allowed values: {allowed}")
        elif kind == "value_error" and not loc:
            lines.append(item["msg"].removeprefix("Value error, "))
        else:
            msg = " or ".join(dict.fromkeys(i["msg"].removeprefix("Value error, ") for i in items))
            lines.append(f"{path} = {item.get('input')!r} is invalid: {msg}")
    return "\n  ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines)


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
