"""The search space of a sweep, parsed from ``--grid KEY=VALUES`` specs.

Value syntax (one ``--grid`` per key):

- ``lora.r=4,8,16``: a list of choices. Each value is typed: integers, floats (``1e-4`` too),
  ``true``/``false``, ``null``, bracketed lists (``[query,value]``) or plain strings.
- ``train.lr=1e-5..1e-3:log`` or ``lora.dropout=0.0..0.2``: a range, sampled by random/TPE search only.
  Both ends integers gives an integer range.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from lorakit.errors import LorakitError

Scalar = int | float | bool | str | None
Value = Scalar | list[Scalar]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)
SearchKind = Literal["grid", "random", "tpe"]
SEARCH_KINDS: tuple[SearchKind, ...] = ("grid", "random", "tpe")
# Keys the sweep itself owns: each trial gets its own directory.
RESERVED_KEYS = ("output_dir",)


class GridSpecError(LorakitError):
    """A ``--grid`` spec (or a combination of them) cannot be understood."""


@dataclass(frozen=True)
class Choice:
    """A categorical dimension: the trial takes one of ``values``."""

    key: str
    """Dotted config key, e.g. ``lora.r``."""
    values: tuple[Value, ...]
    """The candidate values, in the order given on the command line."""


@dataclass(frozen=True)
class Range:
    """A numeric interval, sampled by random / TPE search."""

    key: str
    """Dotted config key, e.g. ``train.lr``."""
    low: float
    """Lower bound (inclusive)."""
    high: float
    """Upper bound (inclusive)."""
    log: bool
    """Sample uniformly in log space (learning rates)."""
    integer: bool
    """Both bounds were integers: sample integers."""


Dimension = Choice | Range


@dataclass(frozen=True)
class SearchSpace:
    """All dimensions of a sweep, one per distinct key."""

    dims: tuple[Dimension, ...]

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dims]

    @property
    def is_grid(self) -> bool:
        return all(isinstance(d, Choice) for d in self.dims)

    def grid(self) -> list[dict[str, Value]]:
        """Every combination, the first key varying slowest."""
        ranges = [d.key for d in self.dims if isinstance(d, Range)]
        if ranges:
            raise GridSpecError(
                f"--grid {ranges[0]} is a range; grid search needs lists of values "
                "(use --search random or --search tpe to sample ranges)"
            )
        choices = [d.values for d in self.dims if isinstance(d, Choice)]
        return [dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*choices)]

    def describe(self) -> list[str]:
        """A stable text form, used to recognise the same sweep when it is resumed."""
        out = []
        for d in self.dims:
            if isinstance(d, Choice):
                out.append(f"{d.key}={json.dumps(list(d.values))}")
            else:
                out.append(f"{d.key}={d.low}..{d.high}{':log' if d.log else ''}{':int' if d.integer else ''}")
        return out


def parse_space(specs: Sequence[str]) -> SearchSpace:
    """Parse every ``--grid`` spec; keys must be distinct."""
    if not specs:
        raise GridSpecError("a sweep needs at least one --grid KEY=VALUES (e.g. --grid lora.r=4,8,16)")
    dims: list[Dimension] = []
    seen: dict[str, str] = {}
    for spec in specs:
        dim = parse_grid(spec)
        if dim.key in seen:
            raise GridSpecError(
                f"--grid {spec!r}: key {dim.key!r} is already swept by --grid {seen[dim.key]!r}"
            )
        seen[dim.key] = spec
        dims.append(dim)
    return SearchSpace(tuple(dims))


def parse_grid(spec: str) -> Dimension:
    """Parse one ``KEY=VALUES`` spec into a :class:`Choice` or :class:`Range`."""
    key, sep, rest = spec.partition("=")
    key = key.strip()
    if not sep:
        raise GridSpecError(f"--grid {spec!r}: expected KEY=VALUES, e.g. lora.r=4,8,16")
    if not _KEY.fullmatch(key):
        raise GridSpecError(f"--grid {spec!r}: {key!r} is not a dotted config key (e.g. lora.r, train.lr)")
    if key in RESERVED_KEYS:
        raise GridSpecError(f"--grid {spec!r}: {key} is set by the sweep (each trial has its own directory)")
    rest = rest.strip()
    if not rest:
        raise GridSpecError(f"--grid {spec!r}: no values after '='")
    if ".." in rest and not any(c in rest for c in ",[]"):
        return _parse_range(spec, key, rest)
    items = _split_top_level(spec, rest)
    values = []
    for i, item in enumerate(items, start=1):
        if not item:
            raise GridSpecError(f"--grid {spec!r}: value {i} is empty")
        values.append(parse_value(spec, item))
    for i, v in enumerate(values):
        if any(_same(v, w) for w in values[:i]):
            raise GridSpecError(f"--grid {spec!r}: value {items[i]!r} is listed twice")
    return Choice(key, tuple(values))


def parse_value(spec: str, text: str) -> Value:
    """Type one value: int, float, bool, null, bracketed list, else string."""
    text = text.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise GridSpecError(f"--grid {spec!r}: list value {text!r} has no closing ']'")
        inner = text[1:-1].strip()
        if not inner:
            raise GridSpecError(f"--grid {spec!r}: list value {text!r} is empty")
        parts = [p.strip() for p in inner.split(",")]
        if any(not p or p.startswith("[") for p in parts):
            raise GridSpecError(f"--grid {spec!r}: list value {text!r} must hold non-empty, non-list items")
        return [_scalar(spec, p) for p in parts]
    if "]" in text:
        raise GridSpecError(f"--grid {spec!r}: value {text!r} has a ']' without a matching '['")
    return _scalar(spec, text)


def format_value(value: Value) -> str:
    """The command-line form of a value, read back as the same type by a YAML parser."""
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # PyYAML reads 1e-05 as a string: always keep a '.' in the mantissa.
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    if isinstance(value, str) and (_is_number(value) or value.lower() in ("true", "false", "null", "none")):
        return json.dumps(value)
    return str(value)


def _scalar(spec: str, text: str) -> Scalar:
    if text[:1] in "\"'" and len(text) >= 2 and text[-1] == text[0]:
        return text[1:-1]
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):
            raise GridSpecError(f"--grid {spec!r}: value {text!r} is not a finite number")
        return value
    if any(c in text for c in "{}=") or text != text.strip():
        raise GridSpecError(f"--grid {spec!r}: value {text!r} contains characters not allowed in a value")
    return text


def _split_top_level(spec: str, text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    items, depth, cur = [], 0, []
    for c in text:
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth < 0:
                raise GridSpecError(f"--grid {spec!r}: unbalanced ']'")
        if c == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    if depth:
        raise GridSpecError(f"--grid {spec!r}: unbalanced '['")
    items.append("".join(cur).strip())
    return items


def _parse_range(spec: str, key: str, text: str) -> Range:
    log = text.endswith(":log")
    low_s, _, high_s = text.removesuffix(":log").partition("..")
    low_s, high_s = low_s.strip(), high_s.strip()
    if not (_is_number(low_s) and _is_number(high_s)):
        raise GridSpecError(
            f"--grid {spec!r}: a range is LOW..HIGH or LOW..HIGH:log with numbers, e.g. 1e-5..1e-3:log"
        )
    integer = bool(_INT.fullmatch(low_s) and _INT.fullmatch(high_s))
    low, high = float(low_s), float(high_s)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise GridSpecError(f"--grid {spec!r}: range bounds must be finite numbers")
    if low >= high:
        raise GridSpecError(f"--grid {spec!r}: range low {low_s} must be below high {high_s}")
    if log and low <= 0:
        raise GridSpecError(f"--grid {spec!r}: a :log range needs low > 0, got {low_s}")
    return Range(key, low, high, log, integer)


def _is_number(text: str) -> bool:
    return bool(_INT.fullmatch(text) or _FLOAT.fullmatch(text))


def _same(a: Value, b: Value) -> bool:
    return type(a) is type(b) and a == b
