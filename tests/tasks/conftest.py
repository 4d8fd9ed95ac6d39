"""Tiny model folders built once per test session (see tests/tiny_assets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_assets import make_model


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {kind: make_model(root / kind, kind) for kind in ("bert",)}
