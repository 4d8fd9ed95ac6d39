"""Regular expressions from configs and adapter files, with bounded cost.

Module-name patterns (``targets`` / ``exclude`` as a regex, ``rank_pattern`` / ``alpha_pattern``
keys, PEFT's ``layers_pattern``) may come from an untrusted adapter file. A backtracking engine
can take exponential time on patterns such as ``(a+)+$`` or ``(a|aa)+$``, so every pattern is

* at most ``MAX_PATTERN_CHARS`` long,
* refused when a repeated group itself contains an unbounded repeat (``(a+)+``, ``(x*)*y``,
  ``(\\w+\\.)+``): the textbook shape of catastrophic backtracking, and
* matched with the ``regex`` package under a CPU-time limit of ``MATCH_TIMEOUT_S`` per match,
  which catches the rest (overlapping alternatives such as ``(a|aa)+$``).

Legitimate module-name patterns match in microseconds, so the limit never bites them.
"""

from __future__ import annotations

import functools

import regex

from lorakit.errors import ConfigError

MAX_PATTERN_CHARS = 1000
"""Longest pattern accepted."""
MATCH_TIMEOUT_S = 0.05
"""CPU seconds one match may take (the regex package counts the matching thread's CPU time)."""


class PatternError(ConfigError):
    """A module-name pattern is invalid, too long, nested-repeating, or too slow to match."""


class PatternSyntaxError(PatternError):
    """The pattern is not a regular expression at all (some fields then read it as a plain name)."""


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """The compiled pattern, after the length and nesting checks (PatternError names the pattern)."""
    check_bounded(pattern)
    try:
        return regex.compile(pattern)
    except regex.error as e:
        raise PatternSyntaxError(f"{pattern!r} is not a valid regular expression ({e})") from e


def check_bounded(pattern: str) -> None:
    """The length and nested-repeat checks alone (for strings that may also be plain names)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(
            f"pattern {_show(pattern)} is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS} "
            "are allowed"
        )
    nested = nested_repeat(pattern)
    if nested is not None:
        raise PatternError(
            f"pattern {pattern!r} repeats a group that itself repeats ({nested!r}), which can "
            "backtrack for ever on a long name; write it without the nested repeat (or list the "
            "module names)"
        )


def fullmatch(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches all of ``text``, within the time limit."""
    return _run(pattern, text, "fullmatch") is not None


def match(pattern: str, text: str) -> regex.Match[str] | None:
    """``pattern`` matched at the start of ``text``, within the time limit."""
    return _run(pattern, text, "match")


def _run(pattern: str, text: str, how: str) -> regex.Match[str] | None:
    compiled = compile_pattern(pattern)
    try:
        return getattr(compiled, how)(text, timeout=MATCH_TIMEOUT_S)
    except TimeoutError:
        raise PatternError(
            f"pattern {_show(pattern)} took over {MATCH_TIMEOUT_S}s of CPU time to match module "
            f"name {_show(text)}: it backtracks catastrophically; simplify it"
        ) from None


def nested_repeat(pattern: str) -> str | None:
    """The first ``(...)`` group repeated by ``*``, ``+`` or ``{n,}`` while it contains such an
    unbounded repeat itself (``(a+)+``), or None. Bounded repeats (``?``, ``{2,3}``) are fine."""
    open_groups: list[list[int | bool]] = []  # [start, holds an unbounded repeat]
    closed: tuple[int, bool] | None = None  # the group that ended just before position i
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        size, unbounded = _quantifier(pattern, i)
        if size:
            if closed is not None and closed[1] and unbounded:
                return pattern[closed[0] : i + size]
            if unbounded:
                for group in open_groups:
                    group[1] = True
            i, closed = i + size, None
            continue
        closed = None
        if c == "\\":
            i += 2
        elif c == "[":
            i = _class_end(pattern, i)
        elif c == "(":
            open_groups.append([i, False])
            i += 2 if pattern.startswith("(?", i) else 1  # (?:, (?P<..>, (?=: not a quantifier
        elif c == ")" and open_groups:
            start, inner = open_groups.pop()
            closed = (int(start), bool(inner))
            i += 1
        else:
            i += 1
    return None


def _quantifier(pattern: str, i: int) -> tuple[int, bool]:
    """(length, unbounded) of a quantifier starting at ``i`` (lazy/possessive suffix included)."""
    c = pattern[i]
    if c in "*+?":
        size, unbounded = 1, c != "?"
    elif c == "{":
        m = regex.compile(r"\{(\d*)(,?)(\d*)\}").match(pattern, i)
        if m is None or not (m.group(1) or m.group(3)):
            return 0, False  # a literal brace
        size, unbounded = len(m.group(0)), bool(m.group(2)) and not m.group(3)
    else:
        return 0, False
    if i + size < len(pattern) and pattern[i + size] in "?+":
        size += 1
    return size, unbounded


def _class_end(pattern: str, i: int) -> int:
    """Index just past the character class that opens at ``i``."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def _show(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"
