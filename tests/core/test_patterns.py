"""Module-name patterns from untrusted files are bounded: length, nested repeats, match time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from lorakit import AdapterFileError, ConfigError, LoraConfig, inject, load_adapter, save_adapter
from lorakit.patterns import MAX_PATTERN_CHARS, PatternError, fullmatch, nested_repeat

LONG = "a" * 40 + "b"  # a module name on which (a|aa)+$ or (a+)+$ backtrack exponentially in `re`


class LongNames(nn.Module):
    """A model whose first module has a long name of repeated letters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.add_module(LONG, nn.Linear(8, 8))
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(getattr(self, LONG)(x))


@pytest.mark.parametrize(
    ("pattern", "nested"),
    [
        ("(a+)+$", "(a+)+"),
        (r"(x*)*y", "(x*)*"),
        (r".*\.(\w+\.)+proj", r"(\w+\.)+"),
        ("((ab)*c)*", "((ab)*c)*"),
        ("(?:a{2,})+", "(?:a{2,})+"),
        ("(a+)*?", "(a+)*?"),
    ],
)
def test_nested_unbounded_repeats_are_found(pattern: str, nested: str) -> None:
    assert nested_repeat(pattern) == nested


@pytest.mark.parametrize(
    "pattern",
    [
        r".*\.(query|value)",
        r"(.*\.)?(?:q_proj)",
        r"model\.layers\.\d+\.self_attn\.(q|v)_proj",
        r"^(?!.*vision).*\.(q|k|v)_proj$",
        r"(\.\d+)?x",  # an optional group is not a repeat
        r"(\d{1,3}\.){2}",  # bounded inside and outside
        r"[(a+)+]*",  # inside a character class the brackets are literals
        r"\(a+\)+",  # escaped parentheses are not a group
        r"a{,}+",  # a literal brace
    ],
)
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    assert nested_repeat(pattern) is None


def test_a_slow_pattern_fails_fast_with_its_name_and_the_module_name() -> None:
    start = time.process_time()
    with pytest.raises(PatternError, match=r"'\(a\|aa\)\+\$' took over .* to match module name 'aaa"):
        fullmatch("(a|aa)+$", LONG)
    assert time.process_time() - start < 1.0
    assert fullmatch(r".*\.(q|v)_proj", "model.layers.0.self_attn.q_proj")


def test_overlong_patterns_are_refused() -> None:
    with pytest.raises(ConfigError, match=f"targets: pattern .* is {MAX_PATTERN_CHARS + 1} characters"):
        LoraConfig(targets="a" * (MAX_PATTERN_CHARS + 1))


def test_yaml_or_library_configs_refuse_nested_repeats_by_field() -> None:
    with pytest.raises(ConfigError, match=r"exclude: pattern '\(a\+\)\+\$' repeats a group"):
        LoraConfig(exclude="(a+)+$")
    with pytest.raises(ConfigError, match=r"rank_pattern\['\(x\*\)\*y'\]: pattern"):
        LoraConfig(rank_pattern={"(x*)*y": 2})
    assert LoraConfig(rank_pattern={"v_proj[": 2}).rank_for("m.v_proj[") == 2  # not a regex: a name


@pytest.fixture
def saved_adapter(tmp_path: Path) -> Path:
    model = inject(LongNames(), LoraConfig(r=2, targets=[LONG, "proj"]))
    save_adapter(model, tmp_path / "adapter")
    return tmp_path / "adapter"


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda raw: raw.__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("target_modules", "(a+)+$"), r"targets: pattern '\(a\+\)\+\$' repeats a group"),
        (_set("target_modules", "(a|aa)+$"), r"pattern '\(a\|aa\)\+\$' took over .*s of CPU time"),
        (_set("rank_pattern", {"(a|aa)+$": 4}), r"pattern .*\(a\|aa\)\+\$.* took over"),
        (_set("rank_pattern", {"(a+)+$": 4}), r"rank_pattern\['\(a\+\)\+\$'\]: pattern"),
        (_set("layers_pattern", "(a+)+"), r"layers_pattern: pattern '\(a\+\)\+' repeats"),
    ],
    ids=["targets-nested", "targets-slow", "rank-slow", "rank-nested", "layers-nested"],
)
def test_catastrophic_patterns_in_an_adapter_file_fail_fast_and_name_the_file(
    saved_adapter: Path, edit: Callable[[dict], None], message: str
) -> None:
    path = saved_adapter / "adapter_config.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    model = LongNames()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = time.perf_counter()
    with pytest.raises(AdapterFileError, match=message) as caught:
        load_adapter(model, saved_adapter)
    assert time.perf_counter() - start < 1.0
    assert str(path) in str(caught.value)
    assert type(model.proj) is nn.Linear
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
