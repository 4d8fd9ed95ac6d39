"""Typed variant fields: validation messages and what adapter_config.json says."""

from __future__ import annotations

import json

import pytest

import lorakit
from conftest import MODELS
from lorakit.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"init": "loftq"},
            r"LoraConfig\.init = 'loftq' is invalid: expected one of \('kaiming', 'gaussian', 'pissa'",
        ),
        ({"use_dora": "yes"}, r"LoraConfig\.use_dora = 'yes' is invalid: expected true or false"),
    ],
)
def test_bad_variant_fields_name_key_value_and_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        lorakit.LoraConfig(**kwargs)


def test_dora_file_says_use_dora_and_holds_magnitudes(tmp_path) -> None:
    build, _, targets = MODELS["gpt2"]
    model = lorakit.inject(build(), lorakit.LoraConfig(r=2, targets=targets, use_dora=True, use_rslora=True))
    lorakit.save_adapter(model, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert saved["use_dora"] is True and saved["use_rslora"] is True
    from safetensors import safe_open

    with safe_open(str(tmp_path / "a" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert sum(k.endswith(".lora_magnitude_vector") for k in keys) == 2
