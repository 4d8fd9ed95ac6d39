"""Issue 12 item 7: key.sub=value overrides are accepted anywhere on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.cli import main
from tiny_assets import write_run


@pytest.fixture
def cfg(tmp_path: Path, tiny_dirs: dict[str, Path]) -> Path:
    return write_run(
        tmp_path, "classification", tiny_dirs["bert"], max_steps=4, eval_every=None, save_every=2
    )


def test_overrides_after_output_dir(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "elsewhere"
    assert main(["train", str(cfg), "--output-dir", str(out), "train.max_steps=3"]) == 0, (
        capsys.readouterr().err
    )
    assert json.loads((out / "summary.json").read_text())["final_step"] == 3


def test_overrides_on_both_sides_of_resume(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(cfg), "train.max_steps=2"]) == 0
    argv = ["train", str(cfg), "train.max_steps=3", "--resume", "resume_allow_changes=[train.max_steps]"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_step"] == 3 and summary["resumed_from"].endswith("step-2")


def test_overrides_after_split(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(cfg), "train.max_steps=1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(cfg), "--split", "validation", "data.max_eval_samples=5"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 5


def test_a_later_override_wins(cfg: Path, tmp_path: Path) -> None:
    assert (
        main(
            ["train", str(cfg), "train.max_steps=1", "--output-dir", str(tmp_path / "o"), "train.max_steps=2"]
        )
        == 0
    )
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["final_step"] == 2


def test_unknown_option_is_a_usage_error_of_the_command(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(cfg), "--ouput-dir", "x"]) == 2
    err = capsys.readouterr().err
    assert "usage: lorakit train" in err and "unrecognized arguments: --ouput-dir x" in err


def test_a_command_without_a_config_takes_no_overrides(capsys: pytest.CaptureFixture) -> None:
    assert main(["merge", "--adapter", "a", "--out", "b", "lora.r=4"]) == 2
    err = capsys.readouterr().err
    assert "usage: lorakit merge" in err and "unrecognized arguments: lora.r=4" in err
