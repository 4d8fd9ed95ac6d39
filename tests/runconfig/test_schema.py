"""Config validation and overrides: errors name the key path, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.errors import ConfigError
from lorakit.layers.gemm import MatmulBackend
from lorakit.runconfig.schema import RunConfig
from lorakit.runconfig.yaml_io import load_config, parse_override, validate_config

BASE = {"model": "m", "task": "classification"}


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        ({**BASE, "lora": {"rank": 4}}, ["unknown key lora.rank", "did you mean lora.r?"]),
        ({**BASE, "lora": {"target_modules": ["q"]}}, ["did you mean lora.targets?"]),
        ({**BASE, "train": {"learning_rate": 1e-3}}, ["did you mean train.lr?"]),
        ({**BASE, "task": "ner"}, ["task = 'ner'", "'token_classification'"]),
        ({**BASE, "train": {"precision": "fp8"}}, ["train.precision = 'fp8'", "'bf16'"]),
        ({**BASE, "train": {"matmul_backend": "mkl"}}, ["train.matmul_backend = 'mkl'", "'onednn'"]),
        ({**BASE, "train": {"batch_size": 0}}, ["train.batch_size = 0", "greater than or equal to 1"]),
        ({**BASE, "data": {"max_length": "long"}}, ["data.max_length = 'long'"]),
        ({**BASE, "data": {"validation": "v", "validation_split": 0.1}}, ["not both"]),
        ({"task": "classification"}, ["missing required key model"]),
        ({**BASE, "data": {"prompt_template": "no placeholder"}}, ["data.prompt_template", "{prompt}"]),
    ],
)
def test_errors_name_key_and_value(data: dict, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    for needle in needles:
        assert needle in str(info.value)


def test_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("model: m\ntask: classification\nlora: {r: 8}\n")
    cfg = load_config(
        p, ["lora.r=4", "train.lr=1e-4", "lora.targets=[query, value]", "data.train=x.tsv", "resume=true"]
    )
    assert cfg.lora.r == 4 and cfg.train.lr == 1e-4 and cfg.lora.targets == ["query", "value"]
    assert cfg.data.train == "x.tsv" and cfg.resume == "auto"
    assert cfg.train.matmul_backend is MatmulBackend.AUTO
    assert load_config(p, ["train.matmul_backend=torch"]).train.matmul_backend is MatmulBackend.TORCH
    with pytest.raises(ConfigError, match="not of the form"):
        parse_override("lora.r")
    with pytest.raises(ConfigError, match="model is 'm', not a section"):
        load_config(p, ["model.sub=1"])


def test_every_field_is_documented() -> None:
    def walk(model: type) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(RunConfig)
