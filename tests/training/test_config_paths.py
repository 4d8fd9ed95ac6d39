"""Issue 12 item 9: relative data paths in a config are read from the config file's folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lorakit.cli import main
from lorakit.runconfig.yaml_io import load_config
from tiny_assets import classification_rows, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def project(tmp_path: Path, model: Path) -> Path:
    """project/configs/cfg.yaml reading configs/data/{train,dev}.jsonl, written relative."""
    folder = tmp_path / "project" / "configs"
    (folder / "data").mkdir(parents=True)
    write_jsonl(folder / "data" / "train.jsonl", classification_rows(32, 0))
    write_jsonl(folder / "data" / "dev.jsonl", classification_rows(8, 1))
    cfg = folder / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": str(model),
                "task": "classification",
                "data": {"train": "data/train.jsonl", "validation": "data/dev.jsonl", "max_length": 16},
                "lora": {"r": 2, "alpha": 16, "dropout": 0.05, "targets": ["query"]},
                "train": {"max_steps": 1, "batch_size": 8, "eval_every": None, "save_every": None},
                "output_dir": "out",
            }
        )
    )
    return cfg


def test_data_next_to_the_config_is_found_from_anywhere(
    tmp_path: Path, tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cfg = project(tmp_path, tiny_dirs["bert"])
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(cfg.relative_to(tmp_path))]) == 0, capsys.readouterr().err
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())  # output_dir: from the cwd
    assert saved["data"]["train"] == str(cfg.parent / "data" / "train.jsonl")


def test_a_missing_file_names_both_candidates(
    tmp_path: Path, tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cfg = project(tmp_path, tiny_dirs["bert"])
    shutil.move(cfg.parent / "data", tmp_path / "data")  # the layout of a config written for the cwd
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert (
        f"data.train = 'data/train.jsonl' not found: looked for {cfg.parent / 'data' / 'train.jsonl'}" in err
    )
    assert "relative to the config file's folder" in err
    assert f"{tmp_path / 'data' / 'train.jsonl'} (relative to the current directory) exists" in err
    shutil.rmtree(tmp_path / "data")
    assert main(["train", str(cfg)]) == 2
    assert "(relative to the current directory) either" in capsys.readouterr().err


def test_override_paths_are_relative_to_the_current_directory(
    tmp_path: Path, tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = project(tmp_path, tiny_dirs["bert"])
    write_jsonl(tmp_path / "mine.jsonl", classification_rows(8, 3))
    monkeypatch.chdir(tmp_path)
    config = load_config(cfg, ["data.validation=mine.jsonl"])
    assert config.data.validation == "mine.jsonl"
    assert config.data.train == str(cfg.parent / "data" / "train.jsonl")


def test_help_and_readme_say_so(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "Relative paths in CONFIG (data files, a model folder) are read relative to the config file's"
        in shown
    )
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        "Relative paths in a config file (data files, a model folder) are read relative to the config"
        in readme
    )


def test_the_demo_example_runs_from_another_directory(
    tmp_path: Path, tiny_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [
        "train",
        str(ROOT / "examples" / "topics_minilm.yaml"),
        f"model={tiny_dirs['bert']}",
        "train.max_steps=1",
        "train.eval_at_start=false",
        "data.max_train_samples=16",
        "data.max_eval_samples=8",
        "lora.targets=[query]",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "runs" / "topics" / "summary.json").read_text())
    assert summary["train_examples"] == 16
