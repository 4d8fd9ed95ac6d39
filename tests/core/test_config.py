"""LoraConfig validation: every bad value names the field, the value and what is allowed."""

from __future__ import annotations

import math

import pytest

from lorakit import ConfigError, LoraConfig, LorakitError


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("r", 0, ">= 1"),
        ("r", -3, ">= 1"),
        ("r", 2.5, ">= 1"),
        ("r", True, ">= 1"),
        ("alpha", 0, "> 0"),
        ("alpha", -1.0, "> 0"),
        ("alpha", math.inf, "> 0"),
        ("alpha", "16", "> 0"),
        ("dropout", -0.1, "[0, 1)"),
        ("dropout", 1.0, "[0, 1)"),
        ("dropout", math.nan, "[0, 1)"),
        ("bias", "some", "lora_only"),
        ("init", "orthogonal", "gaussian"),
        ("use_rslora", "yes", "true or false"),
        ("targets", [], "regex"),
        ("targets", ["q", ""], "regex"),
        ("layers", [0, -1], "block indices"),
        ("modules_to_save", "classifier", "list of module names"),
    ],
)
def test_invalid_field_names_field_value_and_allowed(field: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        LoraConfig(**{field: value})
    msg = str(info.value)
    assert f"LoraConfig.{field}" in msg
    assert repr(value) in msg
    assert allowed in msg


def test_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        LoraConfig(r=0)
    assert issubclass(ConfigError, LorakitError)


def test_pattern_values_validated() -> None:
    with pytest.raises(ConfigError, match=r"rank_pattern\['q'\].*0"):
        LoraConfig(rank_pattern={"q": 0})
    with pytest.raises(ConfigError, match=r"alpha_pattern\['q'\].*-2"):
        LoraConfig(alpha_pattern={"q": -2})


def test_bad_regex_target_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"targets.*regular expression"):
        LoraConfig(targets="(unclosed")


def test_defaults_and_scaling() -> None:
    cfg = LoraConfig(r=4, alpha=8, targets=["q"])
    assert cfg.scaling_for("x.q") == 2.0
    rs = LoraConfig(r=4, alpha=8, targets=["q"], use_rslora=True)
    assert rs.scaling_for("x.q") == 4.0
    assert LoraConfig().targets == "all-linear"
    assert LoraConfig().bias == "none" and LoraConfig().init == "kaiming"


def test_rank_and_alpha_patterns() -> None:
    cfg = LoraConfig(
        r=4, alpha=8, targets=["q", "v"], rank_pattern={"v": 2, r"layer\.1\.q": 6}, alpha_pattern={"v": 1}
    )
    assert cfg.rank_for("model.layer.0.v") == 2
    assert cfg.rank_for("model.layer.1.q") == 6
    assert cfg.rank_for("model.layer.0.q") == 4
    assert cfg.alpha_for("model.layer.0.v") == 1.0
    assert cfg.scaling_for("model.layer.0.v") == 0.5
    assert cfg.scaling_for("model.layer.1.q") == 8 / 6


def test_defaults_are_not_shared() -> None:
    a, b = LoraConfig(), LoraConfig()
    a.rank_pattern["q"] = 2
    a.alpha_pattern["q"] = 1.0
    assert b.rank_pattern == {} and b.alpha_pattern == {}
    assert a.modules_to_save is None and a.saved_modules() == []  # None: no module trained in full


def test_first_matching_pattern_key_wins() -> None:
    cfg = LoraConfig(r=4, alpha_pattern={r"layers\.1\..*q_proj": 4.0, "q_proj": 32.0})
    assert cfg.alpha_for("model.layers.1.self_attn.q_proj") == 4.0
    assert cfg.alpha_for("model.layers.0.self_attn.q_proj") == 32.0
    assert cfg.alpha_for("model.layers.0.self_attn.xq_proj") == cfg.alpha
