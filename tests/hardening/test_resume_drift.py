"""Resume drift (issue 7, item 3): a resume that would change the training is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from lorakit.cli import main
from lorakit.training import loop
from tiny_assets import write_run

RUN = {"max_steps": 6, "save_every": 3, "eval_every": None}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_dirs: dict[str, Path]) -> Path:
    """A finished run with checkpoints step-3 and step-6; tests copy its output folder."""
    root = tmp_path_factory.mktemp("drift")
    model = root / "bert"
    shutil.copytree(tiny_dirs["bert"], model)
    cfg = write_run(root, "classification", model, **RUN)
    assert main(["train", str(cfg)]) == 0
    return cfg


def _resume(cfg: Path, tmp_path: Path, *overrides: str) -> list[str]:
    out = tmp_path / "run"
    shutil.copytree(cfg.parent / "run", out)
    return ["train", str(cfg), f"output_dir={out}", *overrides, "--resume"]


def _no_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals must come before any model, tokenizer or data is loaded."""

    def forbidden(config: object) -> None:
        raise AssertionError("setup_run reached: the drift check must come first")

    monkeypatch.setattr(loop, "setup_run", forbidden)


@pytest.mark.parametrize(
    ("override", "key", "old", "new"),
    [
        ("train.seed=7", "train.seed", "0", "7"),
        ("train.lr=0.02", "train.lr", "0.01", "0.02"),
        ("train.batch_size=4", "train.batch_size", "8", "4"),
        ("lora.r=8", "lora.r", "4", "8"),
        ("lora.targets=[query]", "lora.targets", "['query', 'value']", "['query']"),
        ("model=minilm-l6", "model", "bert", "'minilm-l6'"),
        ("train.max_steps=12", "train.max_steps", "6", "12"),
        ("lora.alpha=4", "lora.alpha", "8.0", "4.0"),
    ],
)
def test_changed_training_key_is_refused_with_old_and_new(
    trained: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    override: str,
    key: str,
    old: str,
    new: str,
) -> None:
    argv = _resume(trained, tmp_path, override)
    _no_setup(monkeypatch)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "resume refused" in err, err
    line = next(ln for ln in err.splitlines() if ln.strip().startswith(f"{key}:"))
    assert old in line.split("->")[0] and new in line.split("->")[1], line
    assert len([ln for ln in err.splitlines() if "->" in ln]) == 1, "only the changed key is listed"


@pytest.mark.parametrize(
    "override",
    ["train.eval_every=2", "train.log_every=1", "train.num_threads=2", "train.keep_checkpoints=5"],
)
def test_bookkeeping_keys_change_freely(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture, override: str
) -> None:
    assert main(_resume(trained, tmp_path, override)) == 0
    assert "resumed from" in capsys.readouterr().err


def test_explicit_override_allows_the_change(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = _resume(trained, tmp_path, "train.lr=0.02", "resume_allow_changes=[train.lr]")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "resume_allow_changes: train.lr: 0.01 -> 0.02" in err, err


def test_shape_keys_cannot_be_allowed(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    argv = _resume(trained, tmp_path, "lora.r=8", "resume_allow_changes=[lora.r]")
    _no_setup(monkeypatch)
    assert main(argv) == 2
    assert "lora.r cannot change on resume" in capsys.readouterr().err


def test_unknown_key_in_allow_list_is_a_config_error(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(_resume(trained, tmp_path, "resume_allow_changes=[train.learning_rate]")) == 2
    err = capsys.readouterr().err
    assert "resume_allow_changes" in err and "train.learning_rate" in err, err


def test_same_path_with_other_base_weights_is_refused(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = _resume(trained, tmp_path)
    weights = Path(yaml.safe_load(trained.read_text())["model"]) / "model.safetensors"
    original = weights.read_bytes()
    tensors = load_file(str(weights))
    key = next(k for k in tensors if k.endswith("attention.self.query.weight"))
    tensors[key] = tensors[key] + 0.01 * torch.randn_like(tensors[key])
    try:
        save_file(tensors, str(weights), metadata={"format": "pt"})
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "is not the one" in err and "base weights differ" in err, err
    finally:
        weights.write_bytes(original)
