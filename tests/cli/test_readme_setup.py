"""Issue 12 item 11: the README tells a new user what the demo and the examples assume."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.demo.__main__ import lorakit_command

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_says_to_activate_the_venv() -> None:
    setup = README[README.index("## Set-up") : README.index("## Quick example")]
    assert "source .venv/bin/activate" in setup


def test_demo_hint_works_without_an_activated_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv's bin/ not on PATH
    command = lorakit_command()
    assert command != "lorakit"
    assert (command.endswith("lorakit") and Path(command).is_file()) or command.endswith("-m lorakit")


def test_readme_names_the_shared_data_of_the_examples() -> None:
    setup = " ".join(README[README.index("## Set-up") : README.index("## Quick example")].split())
    assert "../shared/data/" in setup
    for name in ("sst2_minilm.yaml", "e2e_smollm2.yaml", "sst2_rank_sweep.yaml"):
        assert name in setup, name
