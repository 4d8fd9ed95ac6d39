"""Issue 12 item 8: an empty label, or a list / object where one label belongs, is refused (record
and field named) unless data.strict_labels is false."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorakit.cli import main
from tiny_assets import classification_rows, write_jsonl, write_run


def with_label(cfg: Path, index: int, value: object) -> None:
    rows = classification_rows(64, 0)
    rows[index]["label"] = value
    write_jsonl(cfg.parent / "train.jsonl", rows)


@pytest.fixture
def cfg(tmp_path: Path, tiny_dirs: dict[str, Path]) -> Path:
    return write_run(
        tmp_path, "classification", tiny_dirs["bert"], max_steps=1, eval_every=None, save_every=None
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "record 3: field 'label' is empty"),
        ("  ", "record 3: field 'label' is empty"),
        (["pos"], "record 3: field 'label' holds a list ([\"pos\"]), not one label"),
        ({"name": "pos"}, "record 3: field 'label' holds an object"),
    ],
)
def test_bad_label_values_are_refused(
    cfg: Path, value: object, message: str, capsys: pytest.CaptureFixture
) -> None:
    with_label(cfg, 2, value)
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg.parent / 'train.jsonl'}, {message}" in err
    assert "data.strict_labels: false" in err and "Traceback" not in err


def test_empty_csv_cell_is_refused(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    csv = cfg.parent / "train.csv"
    csv.write_text("text,label\nthe film was good,pos\nthe plot was bad,\nthe film was fine,pos\nbad,neg\n")
    assert main(["train", str(cfg), f"data.train={csv}"]) == 2
    assert f"{csv}, record 2: field 'label' is empty" in capsys.readouterr().err


def test_opting_in_makes_them_classes(cfg: Path, tmp_path: Path) -> None:
    rows = classification_rows(64, 0)
    rows[2]["label"], rows[5]["label"] = "", ["b", "a"]
    write_jsonl(cfg.parent / "train.jsonl", rows)
    assert main(["train", str(cfg), "data.strict_labels=false"]) == 0
    labels = json.loads((tmp_path / "run" / "adapter" / "lorakit_task.json").read_text())["labels"]
    assert labels == ["", '["b", "a"]', "neg", "pos"]
