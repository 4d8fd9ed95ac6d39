"""Line-aligned parallel files (Moses style) as records, through the data config."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.data.parallel import read_parallel
from lorakit.data.splits import load_splits, resolve_split
from lorakit.errors import DataError
from lorakit.runconfig.schema import DataSection


def test_parallel_files_become_records(tmp_path: Path) -> None:
    (tmp_path / "train.en").write_text("A dog runs.\nTwo men talk.\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("Ein Hund rennt.\nZwei Männer reden.\n", encoding="utf-8")
    want = [
        {"en": "A dog runs.", "de": "Ein Hund rennt."},
        {"en": "Two men talk.", "de": "Zwei Männer reden."},
    ]
    assert read_parallel(tmp_path / "train", ["en", "de"]) == want
    data = DataSection(
        train=str(tmp_path / "train"), validation=str(tmp_path / "train"), parallel_suffixes=["en", "de"]
    )
    assert load_splits(data).records["validation"] == want
    assert resolve_split(data, str(tmp_path / "train"))[0] == want


def test_parallel_errors_name_the_files(tmp_path: Path) -> None:
    (tmp_path / "x.en").write_text("a\nb\n")
    (tmp_path / "x.de").write_text("a\n")
    with pytest.raises(DataError, match=r"x\.en: 2, .*x\.de: 1"):
        read_parallel(tmp_path / "x", ["en", "de"])
    with pytest.raises(DataError, match=r"x\.fr not found"):
        read_parallel(tmp_path / "x", ["en", "fr"])
