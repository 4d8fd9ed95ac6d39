"""Issue 12 item 11: `inspect --targets` marks every hit, however deep, without --depth."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.cli import main


def test_hits_below_the_default_depth_are_shown(
    tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    # BertForSequenceClassification: bert.encoder.layer.0.attention.self.query is 7 levels deep.
    assert (
        main(["inspect", str(tiny_dirs["bert"]), "--task", "classification", "--targets", "query", "value"])
        == 0
    )
    out = capsys.readouterr().out
    marked = [line.split()[0] for line in out.splitlines() if "<-- LoRA target" in line]
    assert marked == ["query", "value"]
    assert "intermediate (" in out  # siblings at the shown depth still listed


def test_depth_still_limits_the_other_branches(
    tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(
            [
                "inspect",
                str(tiny_dirs["bert"]),
                "--task",
                "classification",
                "--targets",
                "query",
                "--depth",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "<-- LoRA target" in out and "pooler (" in out
    assert "dense (" not in out  # pooler.dense (no target below) stays folded
