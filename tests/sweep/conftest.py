"""A tiny BERT classifier config (built from the train tests' assets) for end-to-end sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiny_assets


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_assets.make_model(tmp_path_factory.mktemp("sweep-model") / "bert", "bert")


@pytest.fixture
def tiny_config(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    """Classification run: 12 steps, evaluation at steps 6 and 12."""
    return tiny_assets.write_run(tmp_path / "run", "classification", tiny_bert_dir, n_train=48)
