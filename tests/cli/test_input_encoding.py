"""Issue 12 item 4: text that is not UTF-8 on stdin or in an option is refused cleanly (exit 2)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorakit.cli import main
from tiny_assets import write_run

SRC = Path(__file__).resolve().parents[2] / "src"


class BytesStdin(io.TextIOWrapper):
    """A stdin whose bytes are the given ones (what a shell pipe hands over)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8", errors="surrogateescape")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_dirs: dict[str, Path]) -> Path:
    root = tmp_path_factory.mktemp("encoding")
    cfg = write_run(root, "classification", tiny_dirs["bert"], max_steps=2, eval_every=None, save_every=None)
    assert main(["train", str(cfg)]) == 0
    return cfg


def test_latin1_bytes_on_stdin_name_line_and_byte(
    trained: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stdin", BytesStdin(b"the film was good\nCaf\xe9 is good\n"))
    assert main(["predict", str(trained), "--input", "-"]) == 2
    err = capsys.readouterr().err
    assert "stdin, line 2: not UTF-8 text (byte 0xe9)" in err and "Traceback" not in err


def test_utf8_with_a_byte_order_mark_on_stdin_is_read(
    trained: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stdin", BytesStdin("\ufeffCafé was good\n".encode()))
    assert main(["predict", str(trained), "--input", "-"]) == 0
    assert '"input": "Café was good"' in capsys.readouterr().out


def test_prompt_that_is_not_utf8_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    # Python hands argv bytes that are not UTF-8 over as lone surrogates ("\udce9" for 0xe9).
    assert main(["generate", "--adapter", "nowhere", "--prompt", "Caf\udce9 is good"]) == 2
    err = capsys.readouterr().err
    assert "argument --prompt: not UTF-8 text (byte 0xe9 at position 4)" in err
    assert "usage: lorakit generate" in err and "Traceback" not in err


def test_real_latin1_argv_bytes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        [sys.executable, "-m", "lorakit", "generate", "--adapter", str(tmp_path), "--prompt", b"Caf\xe9"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert b"not UTF-8 text (byte 0xe9" in done.stderr and b"Traceback" not in done.stderr
