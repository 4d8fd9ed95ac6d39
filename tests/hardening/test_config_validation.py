"""Config validation (issue 7, item 7): each malformed config gives ONE message naming the key,
exit code 2, no traceback, and stops before anything is loaded (tokenizer, data, model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lorakit.cli import main
from lorakit.training import setup

DELETE = object()
BASE: dict[str, Any] = {
    "model": "/nonexistent/MODEL-MUST-NOT-LOAD",
    "task": "classification",
    "data": {"train": "train.jsonl", "validation": "dev.jsonl", "max_length": 32},
    "lora": {"r": 4, "alpha": 8, "dropout": 0.05, "targets": ["query", "value"]},
    "train": {"max_steps": 4, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
    "output_dir": "run",
}

# (case id, {dotted key: value or DELETE}, text the one-line message must contain: the key)
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-top-key", {"modle": "x"}, "unknown key modle (did you mean model?)"),
    ("unknown-lora-key", {"lora.rank": 8}, "unknown key lora.rank (did you mean lora.r?)"),
    ("unknown-train-key", {"train.learning_rate": 1e-3}, "unknown key train.learning_rate"),
    ("missing-task", {"task": DELETE}, "missing required key task"),
    ("missing-model", {"model": DELETE}, "missing required key model"),
    ("unknown-task", {"task": "summarize"}, "task = 'summarize'"),
    ("rank-wrong-type", {"lora.r": "eight"}, "lora.r = 'eight'"),
    ("rank-zero", {"lora.r": 0}, "lora.r = 0"),
    ("alpha-negative", {"lora.alpha": -1}, "lora.alpha = -1"),
    ("dropout-one", {"lora.dropout": 1.5}, "lora.dropout = 1.5"),
    ("bias-unknown", {"lora.bias": "some"}, "lora.bias = 'some'"),
    ("targets-wrong-type", {"lora.targets": 5}, "lora.targets = 5"),
    ("init-unknown", {"lora.init": "xavier"}, "lora.init = 'xavier'"),
    ("lr-negative", {"train.lr": -1e-4}, "train.lr = -0.0001"),
    ("lr-wrong-type", {"train.lr": "fast"}, "train.lr = 'fast'"),
    ("grad-accum-zero", {"train.grad_accum": 0}, "train.grad_accum = 0"),
    ("batch-size-zero", {"train.batch_size": 0}, "train.batch_size = 0"),
    ("steps-and-epochs-null", {"train.max_steps": None, "train.epochs": None}, "train.max_steps"),
    ("max-steps-negative", {"train.max_steps": -5}, "train.max_steps = -5"),
    ("warmup-ratio-range", {"train.warmup_ratio": 1.5}, "train.warmup_ratio = 1.5"),
    ("scheduler-unknown", {"train.scheduler": "step"}, "train.scheduler = 'step'"),
    ("precision-unknown", {"train.precision": "fp8"}, "train.precision = 'fp8'"),
    ("fp16-on-cpu", {"train.precision": "fp16"}, "train.precision = 'fp16'"),
    ("device-unknown", {"train.device": "tpu"}, "train.device = 'tpu'"),
    ("patience-zero", {"train.early_stopping_patience": 0}, "train.early_stopping_patience = 0"),
    ("keep-checkpoints-zero", {"train.keep_checkpoints": 0}, "train.keep_checkpoints = 0"),
    ("seed-fraction", {"train.seed": 1.5}, "train.seed = 1.5"),
    ("section-wrong-type", {"train": [1, 2]}, "train = [1, 2]"),
    ("validation-and-split", {"data.validation_split": 0.1}, "data.validation_split"),
    (
        "validation-split-range",
        {"data.validation": None, "data.validation_split": 1.5},
        "data.validation_split",
    ),
    ("max-length-too-small", {"data.max_length": 2}, "data.max_length = 2"),
    ("template-without-prompt", {"data.prompt_template": "Q: {x}"}, "data.prompt_template"),
    ("resume-unknown", {"resume": "sometimes"}, "resume = 'sometimes'"),
    ("metric-not-of-task", {"train.metric_for_best": "bleu"}, "train.metric_for_best = 'bleu'"),
    ("beams-zero", {"eval.num_beams": 0}, "eval.num_beams = 0"),
    ("pair-field-for-lm", {"task": "causal_lm", "data.text_pair_field": "b"}, "data.text_pair_field"),
    ("allow-unknown-key", {"resume_allow_changes": ["train.learning_rate"]}, "resume_allow_changes"),
]


def _config(tmp_path: Path, changes: dict[str, Any]) -> Path:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def nothing_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to resolve or load a model, tokenizer or data fails the test loudly."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a malformed config reached the loading stage")

    for name in ("resolve_model", "load_tokenizer", "load_splits", "prepare_model"):
        monkeypatch.setattr(setup, name, forbidden)


def test_there_are_at_least_thirty_distinct_cases() -> None:
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("changes", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.usefixtures("nothing_loads")
def test_malformed_config_one_message_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture, changes: dict[str, Any], needle: str
) -> None:
    cfg = _config(tmp_path, changes)
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one message, got:\n{err}"
    assert lines[0].startswith("lorakit train: error: ")
    assert needle in lines[0], lines[0]
    assert "Traceback" not in err and "MODEL-MUST-NOT-LOAD" not in err


@pytest.mark.usefixtures("nothing_loads")
def test_valid_base_config_reaches_loading(tmp_path: Path) -> None:
    """The guard is real: the unmodified config does reach the (forbidden) loading stage."""
    with pytest.raises(AssertionError, match="reached the loading stage"):
        main(["train", str(_config(tmp_path, {}))])


def test_epochs_null_is_fine_with_max_steps() -> None:
    from lorakit.runconfig.yaml_io import validate_config

    cfg = validate_config({**BASE, "train": {**BASE["train"], "epochs": None}})
    assert cfg.train.max_steps == 4 and cfg.train.epochs is None
