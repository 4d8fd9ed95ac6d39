"""`lorakit serve` argument handling: user mistakes exit 2 with one message, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.cli import main


def test_missing_base_and_bad_values_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["serve"]) == 2
    assert "--base MODEL is required" in capsys.readouterr().err
    assert main(["serve", "--base", "x", "--adapter", "noequals"]) == 2
    assert "expected NAME=DIR" in capsys.readouterr().err
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("base: x\nmax_batch: 0\n")
    assert main(["serve", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "max_batch" in err and "Traceback" not in err
    cfg.write_text("base: x\nportt: 1\n")
    assert main(["serve", str(cfg)]) == 2
    assert "portt" in capsys.readouterr().err


def test_unknown_base_model_exits_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["serve", "--base", "/nonexistent/model"]) == 2
    assert "not found" in capsys.readouterr().err
