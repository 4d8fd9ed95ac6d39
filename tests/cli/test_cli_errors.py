"""User mistakes: a clear message on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lorakit.cli import main
from tiny_assets import write_run

SRC = Path(__file__).resolve().parents[2] / "src"


def _fails(argv: list[str], capsys: pytest.CaptureFixture, *needles: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def _edit(cfg: Path, **changes: object) -> Path:
    data = yaml.safe_load(cfg.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    cfg.write_text(yaml.safe_dump(data))
    return cfg


@pytest.fixture
def cfg(tmp_path: Path, tiny_dirs: dict[str, Path]) -> Path:
    return write_run(
        tmp_path, "classification", tiny_dirs["bert"], max_steps=2, save_every=None, eval_every=None
    )


def test_missing_data_file(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(
        ["train", str(cfg), "data.train=/nonexistent/train.jsonl"],
        capsys,
        "/nonexistent/train.jsonl",
        "not found",
    )


def test_missing_config_file(capsys: pytest.CaptureFixture) -> None:
    _fails(["train", "no-such-config.yaml"], capsys, "no-such-config.yaml", "not found")


def test_malformed_jsonl_names_file_and_line(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    train = cfg.parent / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[2] = '{"text": "the film", "label": '
    train.write_text("\n".join(lines) + "\n")
    _fails(["train", str(cfg)], capsys, f"{train}, line 3", "malformed JSON")


def test_missing_field(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(["train", str(cfg), "data.text_field=sentence"], capsys, "missing field 'sentence'", "record 1")


def test_unknown_task(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(["train", str(_edit(cfg, task="summarize"))], capsys, "task = 'summarize'", "'classification'")


def test_config_typo_suggests_key(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(["train", str(cfg), "lora.rank=4"], capsys, "unknown key lora.rank", "did you mean lora.r?")


def test_bad_value_names_key_value_and_allowed(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(["train", str(cfg), "train.scheduler=step"], capsys, "train.scheduler = 'step'", "'cosine'")
    _fails(["train", str(cfg), "train.lr=-1"], capsys, "train.lr = -1", "greater than 0")


def test_empty_dataset(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    (cfg.parent / "train.jsonl").write_text("\n")
    _fails(["train", str(cfg)], capsys, "empty")


def test_unknown_target_module(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(["train", str(cfg), "lora.targets=[qkv]"], capsys, "'qkv' matches no module")


def test_label_not_in_label_map_at_eval(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(cfg)]) == 0
    bad = cfg.parent / "bad.jsonl"
    bad.write_text(
        json.dumps({"text": "the film was good", "label": "pos"})
        + "\n"
        + json.dumps({"text": "the film was fine", "label": "neutral"})
        + "\n"
    )
    capsys.readouterr()
    _fails(["eval", str(cfg), "--split", str(bad)], capsys, "record 2", "'neutral'", "not in the label map")


def test_unknown_model_alias(cfg: Path, capsys: pytest.CaptureFixture) -> None:
    _fails(["train", str(cfg), "model=minilm-l12"], capsys, "'minilm-l12' not found", "minilm-l6")


def test_help_for_every_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for cmd in ("train", "eval", "predict", "generate", "merge", "inspect"):
        assert cmd in top
        assert main([cmd, "--help"]) == 0
        assert "usage: lorakit " + cmd in capsys.readouterr().out


def test_module_entry_point_has_no_traceback(tmp_path: Path) -> None:
    """The real process: exit status 2 and a one-line message for a bad config."""
    bad = tmp_path / "c.yaml"
    bad.write_text("model: x\ntask: classification\nlora: {rank: 4}\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    res = subprocess.run(
        [sys.executable, "-m", "lorakit", "train", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "did you mean lora.r?" in res.stderr and "Traceback" not in res.stderr
