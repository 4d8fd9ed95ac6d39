"""Loading models leaves the process as it found it: streams, transformers' logging settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification
from transformers.utils import logging as hf_logging

import tiny_assets
from lorakit.model_sources import load_pretrained, load_tokenizer, quiet_transformers, resolve_model


@pytest.fixture
def tiny_bert_folder(tmp_path: Path) -> Path:
    return tiny_assets.make_model(tmp_path / "bert", "bert")


def test_quiet_block_restores_transformers_settings_and_never_swaps_streams() -> None:
    out, err = sys.stdout, sys.stderr
    hf_logging.set_verbosity_info()
    hf_logging.disable_progress_bar()
    try:
        with quiet_transformers():
            assert sys.stdout is out and sys.stderr is err
            assert hf_logging.get_verbosity() == hf_logging.ERROR
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.INFO
        assert not hf_logging.is_progress_bar_enabled()  # was off before: stays off
    finally:
        hf_logging.set_verbosity_warning()
        hf_logging.enable_progress_bar()
    with quiet_transformers():
        pass
    assert hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == hf_logging.WARNING


def test_loading_a_model_never_replaces_stdout_or_stderr(tiny_bert_folder: Path) -> None:
    out, err = sys.stdout, sys.stderr
    seen: list[tuple[object, object]] = []

    class Spy:
        """An auto class that records the process streams while transformers would be loading."""

        @staticmethod
        def from_pretrained(*args: object, **kwargs: object) -> object:
            seen.append((sys.stdout, sys.stderr))
            return AutoModelForSequenceClassification.from_pretrained(*args, **kwargs)

    ref = resolve_model(str(tiny_bert_folder))
    model = load_pretrained(ref, Spy, num_labels=2)
    load_tokenizer(ref)
    assert seen == [(out, err)]
    assert sys.stdout is out and sys.stderr is err
    assert sum(p.numel() for p in model.parameters()) > 0
