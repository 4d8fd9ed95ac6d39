"""--grid parsing: typed values, ranges, and errors that name the bad spec."""

from __future__ import annotations

import re

import pytest
import yaml

from lorakit.errors import LorakitError
from lorakit.sweep.space import Choice, GridSpecError, Range, format_value, parse_grid, parse_space


def test_values_are_typed() -> None:
    assert parse_grid("lora.r=4,8,16") == Choice("lora.r", (4, 8, 16))
    assert parse_grid("train.lr=1e-4, 5e-4,0.001") == Choice("train.lr", (1e-4, 5e-4, 1e-3))
    assert parse_grid("x.y=true,null,abc,'7'") == Choice("x.y", (True, None, "abc", "7"))
    lists = parse_grid("lora.targets=[query,value],[query,key,value]")
    assert lists == Choice("lora.targets", (["query", "value"], ["query", "key", "value"]))
    assert [type(v) for v in parse_grid("lora.alpha=8,16.0").values] == [int, float]


def test_ranges() -> None:
    assert parse_grid("train.lr=1e-5..1e-3:log") == Range("train.lr", 1e-5, 1e-3, log=True, integer=False)
    assert parse_grid("lora.r=1..64") == Range("lora.r", 1, 64, log=False, integer=True)


@pytest.mark.parametrize(
    "value", [4, 1e-5, 2.5e-4, 0.0, True, None, "abc", "1e-4", "true", ["query", "value"], [1, 2.0e-7]]
)
def test_format_value_round_trips_through_yaml(value: object) -> None:
    assert yaml.safe_load(format_value(value)) == value
    assert type(yaml.safe_load(format_value(value))) is type(value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lora.r", "expected KEY=VALUES"),
        ("lora.r=", "no values after '='"),
        ("lora.r=4,,8", "value 2 is empty"),
        ("=4", "is not a dotted config key"),
        ("lora..r=4", "is not a dotted config key"),
        ("lora r=4", "is not a dotted config key"),
        ("lora.r=4,4", "listed twice"),
        ("lora.targets=[a,b", "unbalanced '['"),
        ("lora.r=4]", "unbalanced ']'"),
        ("lora.targets=[]", "is empty"),
        ("train.lr=1e-3..1e-5", "must be below high"),
        ("train.lr=0..1:log", "needs low > 0"),
        ("train.lr=a..b", "a range is LOW..HIGH"),
        ("train.lr=inf", "not a finite number"),
        ("output_dir=a,b", "set by the sweep"),
        ("data.train=a=b", "not allowed in a value"),
    ],
)
def test_bad_specs_name_the_spec(spec: str, message: str) -> None:
    with pytest.raises(GridSpecError, match=re.escape(message)) as info:
        parse_grid(spec)
    assert repr(spec) in str(info.value)
    assert isinstance(info.value, LorakitError)


def test_space_grid_and_key_clash() -> None:
    space = parse_space(["lora.r=4,8", "train.lr=1e-4,1e-3,1e-2"])
    grid = space.grid()
    assert len(grid) == 6
    assert grid[0] == {"lora.r": 4, "train.lr": 1e-4} and grid[-1] == {"lora.r": 8, "train.lr": 1e-2}
    with pytest.raises(GridSpecError, match="already swept"):
        parse_space(["lora.r=4", "lora.r=8"])
    with pytest.raises(GridSpecError, match="at least one --grid"):
        parse_space([])
    with pytest.raises(GridSpecError, match=r"train\.lr is a range; grid search needs lists"):
        parse_space(["train.lr=1e-4..1e-3"]).grid()
