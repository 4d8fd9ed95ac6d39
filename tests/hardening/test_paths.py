"""``lorakit.paths``: names and relative paths from user input never lead outside their folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lorakit.errors import UnsafePathError
from lorakit.paths import check_path_text, safe_child, safe_name


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "runs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link_out").symlink_to(outside)
    (root / "inner").mkdir()
    (root / "link_in").symlink_to(root / "inner")
    (root / "file_out").symlink_to(outside / "target.txt")
    return root, outside


def _write_under(root: Path, relative: str) -> Path:
    """What a CLI does with an output name: resolve it safely, then create and write."""
    path = safe_child(root, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("data")
    return path


ESCAPES = [
    "../evil",
    "a/../../evil",
    "..",
    "/tmp/evil",
    "link_out/evil",
    "link_out",
    "file_out",
    "inner/../../outside/evil",
    "a\x00b",
    "",
    ".",
    "link_in/../link_out/x",
]


@pytest.mark.parametrize("relative", ESCAPES)
def test_escapes_are_refused_and_nothing_appears_outside(layout: tuple[Path, Path], relative: str) -> None:
    root, outside = layout
    before_outside = sorted(os.listdir(outside))
    before_parent = sorted(os.listdir(root.parent))
    with pytest.raises(UnsafePathError):
        _write_under(root, relative)
    assert sorted(os.listdir(outside)) == before_outside == []
    assert sorted(os.listdir(root.parent)) == before_parent
    assert not Path("/tmp/evil").exists()


@pytest.mark.parametrize("relative", ["adapter", "checkpoints/step-10", "link_in/x", "a/./b", "new/deep/er"])
def test_paths_inside_are_accepted(layout: tuple[Path, Path], relative: str) -> None:
    root, outside = layout
    written = _write_under(root, relative)
    assert written.is_relative_to(root.resolve()) and written.read_text() == "data"
    assert os.listdir(outside) == []


def test_root_may_not_exist_yet(tmp_path: Path) -> None:
    assert safe_child(tmp_path / "new", "x") == (tmp_path / "new" / "x").resolve()


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\\b", "a\x00", "a\nb", "x" * 256, 5])
def test_safe_name_refuses_non_components(name: object) -> None:
    with pytest.raises(UnsafePathError):
        safe_name(name)  # type: ignore[arg-type]


def test_safe_name_accepts_plain_names() -> None:
    assert safe_name("my-adapter_v2.1") == "my-adapter_v2.1"


def test_check_path_text_refuses_nul_and_empty() -> None:
    for bad in ["a\x00", ""]:
        with pytest.raises(UnsafePathError):
            check_path_text(bad)
    assert check_path_text("/abs/ok") == Path("/abs/ok")
