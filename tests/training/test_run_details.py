"""Issue 12 item 11: the smaller points of a first training run."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lorakit.cli import main
from tiny_assets import write_run


def test_output_dir_that_is_a_file(
    tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(tmp_path, "classification", tiny_dirs["bert"], max_steps=1)
    (tmp_path / "taken").write_text("not a folder")
    assert main(["train", str(cfg), f"output_dir={tmp_path / 'taken'}"]) == 2
    err = capsys.readouterr().err
    assert f"output_dir = '{tmp_path / 'taken'}' is a file, not a folder" in err
    assert "Errno" not in err and "Traceback" not in err


def test_typo_on_the_command_line_is_blamed_on_the_command_line(
    tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(tmp_path, "classification", tiny_dirs["bert"], max_steps=1)
    assert main(["train", str(cfg), "lora.alpah=4"]) == 2
    err = capsys.readouterr().err
    assert "command-line override: unknown key lora.alpah (did you mean lora.alpha?)" in err
    assert str(cfg) not in err
    cfg.write_text(cfg.read_text() + "tarin: {}\n")
    assert main(["train", str(cfg), "lora.alpah=4"]) == 2
    err = capsys.readouterr().err
    assert "command-line override: unknown key lora.alpah" in err
    assert f"{cfg}: unknown key tarin (did you mean train?)" in err


def test_adapter_files_have_the_permissions_of_the_other_files(
    tmp_path: Path, tiny_dirs: dict[str, Path]
) -> None:
    cfg = write_run(tmp_path, "classification", tiny_dirs["bert"], max_steps=2, eval_every=2, save_every=2)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in [
        *(run / "adapter").iterdir(),
        *(run / "best_adapter").iterdir(),
        run / "summary.json",
        run / "metrics.jsonl",
        run / "config.yaml",
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_max_steps_below_save_every_still_writes_a_checkpoint(
    tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(
        tmp_path, "classification", tiny_dirs["bert"], max_steps=3, eval_every=None, save_every=200
    )
    assert main(["train", str(cfg)]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-3"]


def test_validation_split_says_how_many_rows_it_kept(
    tmp_path: Path, tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    cfg = write_run(
        tmp_path, "classification", tiny_dirs["bert"], max_steps=1, eval_every=None, save_every=None
    )
    assert main(["train", str(cfg), "data.validation=null", "data.validation_split=0.25"]) == 0
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "validation_split=0.25:" in line)
    kept = [int(w) for w in line.replace(",", " ").split() if w.isdigit()]
    assert kept[0] + kept[1] == kept[2] == 64 and 0 < kept[1] < 32, line
    assert str(tmp_path / "train.jsonl") in line
