"""The YAML ``lora:`` section is the library's LoraConfig: one schema, one set of defaults, and
the rank reaches the layers through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_bert
from lorakit import ConfigError, LoraConfig, inject
from lorakit.layers import ModulesToSave
from lorakit.model import lora_layers
from lorakit.runconfig.schema import RunConfig
from lorakit.runconfig.yaml_io import load_config, validate_config

BASE = {"model": "m", "task": "classification"}


def test_the_section_is_the_library_config_with_its_defaults() -> None:
    assert RunConfig.model_fields["lora"].annotation is LoraConfig
    cfg = validate_config(BASE)
    assert type(cfg.lora) is LoraConfig and cfg.lora == LoraConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 8.0, 0.0)
    assert cfg.lora.modules_to_save is None  # the task's head, decided when the model is built


# A non-default value for every field of LoraConfig, written as YAML overrides.
EVERY_FIELD = {
    "r": ("4", 4),
    "alpha": ("12", 12.0),
    "dropout": ("0.1", 0.1),
    "targets": ("[query, value]", ["query", "value"]),
    "exclude": ("[value]", ["value"]),
    "layers": ("[0]", [0]),
    "layers_pattern": ("layer", "layer"),
    "rank_pattern": ("{value: 2}", {"value": 2}),
    "alpha_pattern": ("{value: 3}", {"value": 3.0}),
    "bias": ("lora_only", "lora_only"),
    "modules_to_save": ("[classifier]", ["classifier"]),
    "init": ("gaussian", "gaussian"),
    "use_rslora": ("true", True),
    "use_dora": ("true", True),
}


def test_yaml_reaches_every_field(tmp_path: Path) -> None:
    assert set(EVERY_FIELD) == set(LoraConfig.model_fields)
    p = tmp_path / "c.yaml"
    p.write_text("model: m\ntask: classification\n")
    cfg = load_config(p, [f"lora.{key}={text}" for key, (text, _) in EVERY_FIELD.items()])
    for key, (_, value) in EVERY_FIELD.items():
        assert getattr(cfg.lora, key) == value, key
        assert getattr(cfg.lora, key) != LoraConfig.model_fields[key].get_default(call_default_factory=True)


def test_rank_travels_from_yaml_to_the_layers(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model: m\ntask: classification\nlora: {r: 6, alpha: 12, targets: [query, value]}\n")
    cfg = load_config(p, ["lora.rank_pattern={value: 2}"])
    model = inject(tiny_bert(), cfg.lora.with_saved_default(["classifier"]))
    ranks = {name.rsplit(".", 1)[-1]: layer.r["default"] for name, layer in lora_layers(model)}
    assert ranks == {"query": 6, "value": 2}
    assert all(
        layer.lora_A["default"].weight.shape[0] == layer.r["default"] for _, layer in lora_layers(model)
    )
    assert isinstance(model.classifier, ModulesToSave)  # modules_to_save unset: the head given


@pytest.mark.parametrize(
    ("lora", "needle"),
    [
        ({"r": 0}, "lora.r = 0 is invalid: expected an integer >= 1"),
        ({"rank_pattern": {"q": 0}}, "rank_pattern['q'] = 0"),
        ({"init": "svd"}, "lora.init = 'svd' is invalid"),
        ({"rank": 4}, "unknown key lora.rank (did you mean lora.r?)"),
    ],
)
def test_yaml_errors_name_the_key(lora: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config({**BASE, "lora": lora})
    assert needle in str(info.value)
