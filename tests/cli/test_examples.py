"""Every shipped example config validates; the shared-data ones point at the right columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.data.readers import read_records
from lorakit.runconfig.yaml_io import load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_validates(path: Path) -> None:
    """Every data file an example names exists: in the repository, or in ../shared/data (when
    that folder is present next to the checkout)."""
    cfg = load_config(path)
    for split in ("train", "validation"):
        file = getattr(cfg.data, split)
        if not file:
            continue
        location = Path(file)
        if cfg.data.parallel_suffixes:  # a stem: train -> train.en, train.de
            location = Path(f"{file}.{cfg.data.parallel_suffixes[0]}")
        assert location.is_absolute()  # read from the config's folder, whatever the cwd
        if location.is_relative_to(ROOT):
            assert location.is_file(), file
        else:
            assert location.is_relative_to(SHARED), file
            if SHARED.is_dir():
                assert location.is_file(), file


def test_chat_example_has_chat_data() -> None:
    cfg = load_config(ROOT / "examples" / "chat_smollm2.yaml")
    records = read_records(cfg.data.train)
    roles = [m["role"] for m in records[0][cfg.data.messages_field]]
    assert roles == ["user", "assistant"] and len(records) >= 100


@pytest.mark.parametrize(
    ("name", "fields"), [("sst2_minilm", ("sentence", "label")), ("e2e_smollm2", ("mr", "ref"))]
)
def test_shared_data_columns(name: str, fields: tuple[str, str]) -> None:
    cfg = load_config(ROOT / "examples" / f"{name}.yaml")
    path = Path(cfg.data.train)
    if not path.is_file():
        pytest.skip(f"{path} not present")
    first = read_records(path)[0]
    assert set(fields) <= set(first)
