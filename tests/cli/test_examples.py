"""Every shipped example config validates; the shared-data ones point at the right columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.data.readers import read_records
from lorakit.training.config_io import load_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_validates(path: Path) -> None:
    cfg = load_config(path)
    for split in ("train", "validation"):
        file = getattr(cfg.data, split)
        if file and file.startswith("examples/"):
            assert (ROOT / file).is_file(), file


@pytest.mark.parametrize(
    ("name", "fields"), [("sst2_minilm", ("sentence", "label")), ("e2e_smollm2", ("mr", "ref"))]
)
def test_shared_data_columns(name: str, fields: tuple[str, str]) -> None:
    cfg = load_config(ROOT / "examples" / f"{name}.yaml")
    path = ROOT / cfg.data.train
    if not path.is_file():
        pytest.skip(f"{path} not present")
    first = read_records(path)[0]
    assert set(fields) <= set(first)
