"""lorakit save -> load round trips, and how save_adapter writes (atomic, never empty)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import adapter_tensors, logits, randomize_lora, text_inputs, tiny_bert
from lorakit import (
    AdapterFileError,
    LoraConfig,
    LorakitError,
    inject,
    load_adapter,
    merge,
    save_adapter,
    set_adapter,
)
from lorakit.adapter_io import integrity
from lorakit.model import AdapterState

WEIGHTS, CONFIG = "adapter_model.safetensors", "adapter_config.json"


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "cfg_extra",
    [
        {},
        {"bias": "lora_only"},
        {"bias": "all"},
        {"rank_pattern": {"value": 2}, "alpha_pattern": {"query": 3.0}, "use_rslora": True},
    ],
)
def test_round_trip_bert_variants(tmp_path: Path, cfg_extra: dict) -> None:
    model, inputs = tiny_bert(), text_inputs()
    inject(model, LoraConfig(r=4, targets=["query", "value"], modules_to_save=["classifier"], **cfg_extra))
    randomize_lora(model)
    with torch.no_grad():
        # Trained biases and the classifier copy must round-trip too, so make them differ from base.
        for n, p in model.named_parameters():
            if p.requires_grad and ".lora_" not in n:
                p.add_(0.05)
    check_round_trip(model, inputs, tiny_bert, tmp_path)


def test_round_trip_every_model(any_model, tmp_path: Path) -> None:
    from conftest import MODELS

    key, model, inputs, targets = any_model
    inject(model, LoraConfig(r=4, alpha=8, targets=targets))
    randomize_lora(model)
    check_round_trip(model, inputs, MODELS[key][0], tmp_path)


def check_round_trip(model: nn.Module, inputs: dict, build: Callable[[], nn.Module], folder: Path) -> None:
    expected, expected_out = adapter_tensors(model), logits(model, inputs)
    save_adapter(model, folder)
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG, WEIGHTS]
    fresh = build()
    load_adapter(fresh, folder)
    got = adapter_tensors(fresh)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert torch.equal(logits(fresh, inputs), expected_out)
    assert not any(p.requires_grad for p in fresh.parameters())


def test_loaded_adapter_with_dropout_runs_deterministically_in_eval(tmp_path: Path) -> None:
    model, inputs = tiny_bert(), text_inputs()
    inject(model, LoraConfig(targets=["query"], dropout=0.3))
    randomize_lora(model)
    model.eval()
    expected = logits(model, inputs)
    save_adapter(model, tmp_path)
    loaded = load_adapter(tiny_bert().eval(), tmp_path)
    assert not any(m.training for m in loaded.modules())
    assert torch.equal(logits(loaded, inputs), expected)


def test_load_is_trainable_and_second_adapter(tmp_path: Path) -> None:
    model, inputs = tiny_bert(), text_inputs()
    inject(model, LoraConfig(targets=["query"]))
    randomize_lora(model)
    out = logits(model, inputs)
    save_adapter(model, tmp_path)
    fresh = load_adapter(tiny_bert(), tmp_path, is_trainable=True)
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if p.requires_grad
    }
    # A second load keeps a frozen inference model frozen.
    frozen = load_adapter(tiny_bert(), tmp_path)
    load_adapter(frozen, tmp_path, "again")
    assert not any(p.requires_grad for p in frozen.parameters())
    assert frozen.__dict__["_lorakit"].active == "default"
    # Loaded as a second adapter it stays inactive until chosen.
    other = tiny_bert()
    inject(other, LoraConfig(targets=["value"]))
    base_out = logits(other, inputs)
    load_adapter(other, tmp_path, "loaded")
    assert torch.equal(logits(other, inputs), base_out)
    set_adapter(other, "loaded")
    assert torch.equal(logits(other, inputs), out)


def test_save_while_merged_keeps_fingerprint(tmp_path: Path) -> None:
    model = tiny_bert()
    inject(model, LoraConfig(targets=["query"]))
    randomize_lora(model)
    merge(model)
    save_adapter(model, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_adapter(tiny_bert(), tmp_path)


def test_save_writes_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_bert()
    inject(model, LoraConfig(targets=["query"]))
    save_adapter(model, tmp_path)
    good = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    randomize_lora(model)

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(integrity.os, "replace", failing_replace)
    with pytest.raises(AdapterFileError, match="disk full"):
        save_adapter(model, tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == good  # no temp files, old files intact
    save_adapter(model, tmp_path / "nested" / "dir")
    assert sorted(p.name for p in (tmp_path / "nested" / "dir").iterdir()) == [CONFIG, WEIGHTS]


def test_save_refuses_adapter_without_tensors(tmp_path: Path) -> None:
    model = tiny_bert()
    model.__dict__["_lorakit"] = AdapterState(
        configs={"empty": LoraConfig(targets=["query"])}, active="empty"
    )
    with pytest.raises(AdapterFileError, match="no tensors"):
        save_adapter(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_save_unknown_adapter_and_plain_model(tmp_path: Path) -> None:
    with pytest.raises(LorakitError, match="inject"):
        save_adapter(tiny_bert(), tmp_path)
    model = inject(tiny_bert(), LoraConfig(targets=["query"]))
    with pytest.raises(AdapterFileError, match="'nope'"):
        save_adapter(model, tmp_path, "nope")
