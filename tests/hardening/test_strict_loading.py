"""Strict adapter loading beyond the file layout: metadata, ranks, scaling, config types, saving."""

from __future__ import annotations

import copy
import json
import os
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load, save

from conftest import logits, randomize_lora, text_inputs, tiny_bert
from lorakit import LoraConfig, inject, load_adapter, save_adapter
from lorakit.adapter_io.integrity import CHECKSUM_KEY, SCALING_KEY
from lorakit.errors import AdapterFileError, UnsafePathError
from lorakit.model import has_adapters

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, torch.Tensor]:
    base = tiny_bert()
    model = inject(copy.deepcopy(base), LoraConfig(r=4, alpha=8, targets=["query", "value"]))
    randomize_lora(model)
    folder = save_adapter(model, tmp_path_factory.mktemp("adapter") / "a")
    return base, folder, logits(model, text_inputs())


def _copy(folder: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in (WEIGHTS, CONFIG):
        (dst / name).write_bytes((folder / name).read_bytes())
    return dst


def _edit_metadata(folder: Path, edit: Any) -> None:
    data = (folder / WEIGHTS).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    edit(meta)
    (folder / WEIGHTS).write_bytes(save(load(data), metadata=meta))


def _edit_config(folder: Path, **fields: Any) -> None:
    cfg = json.loads((folder / CONFIG).read_text())
    cfg.update(fields)
    (folder / CONFIG).write_text(json.dumps(cfg))


def _refused(base: torch.nn.Module, folder: Path, words: str) -> None:
    model = copy.deepcopy(base)
    with pytest.raises(AdapterFileError) as info:
        load_adapter(model, folder)
    assert words in str(info.value) and str(folder) in str(info.value), str(info.value)
    assert not has_adapters(model)
    assert torch.equal(logits(model, text_inputs()), logits(base, text_inputs()))


def test_clean_file_loads_exactly_without_warnings(saved: tuple, tmp_path: Path) -> None:
    base, folder, ref = saved
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_adapter(copy.deepcopy(base), folder)
    assert torch.equal(logits(model, text_inputs()), ref)


def test_peft_style_file_without_checksum_loads_with_a_warning(saved: tuple, tmp_path: Path) -> None:
    base, folder, ref = saved
    peft_like = _copy(folder, tmp_path / "p")
    _edit_metadata(peft_like, lambda m: [m.pop(k) for k in list(m) if k.startswith("lorakit")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_adapter(copy.deepcopy(base), peft_like)
    messages = [str(w.message) for w in caught]
    assert any("no lorakit content checksum" in m for m in messages), messages
    assert any("no base-model fingerprint" in m for m in messages), messages
    assert all(w.filename == __file__ for w in caught), [w.filename for w in caught]
    assert torch.equal(logits(model, text_inputs()), ref)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda m: m.pop(CHECKSUM_KEY), "'lorakit.checksum' is missing"),
        (lambda m: m.pop(SCALING_KEY), "'lorakit.scaling' is missing"),
        (lambda m: m.update({"lorakit.checksun": m.pop(CHECKSUM_KEY)}), "unknown metadata key"),
        (lambda m: m.update({CHECKSUM_KEY: "0" * 64}), "checksum mismatch"),
        (lambda m: m.update({SCALING_KEY: "[]"}), "malformed"),
    ],
)
def test_damaged_lorakit_metadata_is_refused(saved: tuple, tmp_path: Path, edit: Any, words: str) -> None:
    base, folder, _ = saved
    _edit_metadata(_copy(folder, tmp_path / "d"), edit)
    _refused(base, tmp_path / "d", words)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"lora_alpha": 9}, "scaling"),
        ({"use_rslora": True}, "scaling"),
        ({"alpha_pattern": {"query": 16}}, "scaling"),
        ({"r": 10**12}, "rank"),
        ({"rank_pattern": {"value": 2}}, "rank"),
        ({"use_rslora": "yes"}, "use_rslora"),
        ({"rank_pattern": [1, 2]}, "rank_pattern"),
        ({"modules_to_save": "classifier"}, "modules_to_save"),
        ({"layers_to_transform": "0"}, "layers_to_transform"),
        ({"layers_pattern": "("}, "layers_pattern"),
        ({"lora_dropout": 5}, "dropout"),
    ],
)
def test_edited_config_is_refused_before_anything_is_built(
    saved: tuple, tmp_path: Path, fields: dict, words: str
) -> None:
    base, folder, _ = saved
    _edit_config(_copy(folder, tmp_path / "c"), **fields)
    _refused(base, tmp_path / "c", words)


def test_harmless_config_edits_load_identically(saved: tuple, tmp_path: Path) -> None:
    base, folder, ref = saved
    edited = _copy(folder, tmp_path / "h")
    _edit_config(edited, lora_dropout=0.3, base_model_name_or_path="elsewhere", inference_mode=False)
    model = load_adapter(copy.deepcopy(base), edited)
    assert torch.equal(logits(model, text_inputs()), ref)


def test_save_refuses_nul_in_path(saved: tuple, tmp_path: Path) -> None:
    base, folder, _ = saved
    model = load_adapter(copy.deepcopy(base), folder)
    with pytest.raises(UnsafePathError, match="NUL"):
        save_adapter(model, str(tmp_path / "a\x00b"))
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_symlinked_file_leading_outside(saved: tuple, tmp_path: Path) -> None:
    base, folder, _ = saved
    model = load_adapter(copy.deepcopy(base), folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / WEIGHTS).symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symlink"):
        save_adapter(model, out)
    assert victim.read_text() == "keep me" and sorted(os.listdir(outside)) == ["precious.txt"]
    assert sorted(os.listdir(out)) == [WEIGHTS]


def test_save_replaces_a_symlink_that_stays_inside(saved: tuple, tmp_path: Path) -> None:
    base, folder, ref = saved
    model = load_adapter(copy.deepcopy(base), folder)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.safetensors").write_bytes(b"old")
    (out / WEIGHTS).symlink_to(out / "old.safetensors")
    save_adapter(model, out)
    assert not (out / WEIGHTS).is_symlink() and (out / "old.safetensors").read_bytes() == b"old"
    assert torch.equal(logits(load_adapter(copy.deepcopy(base), out), text_inputs()), ref)


def test_save_write_failure_is_an_adapter_file_error(saved: tuple, tmp_path: Path) -> None:
    base, folder, _ = saved
    model = load_adapter(copy.deepcopy(base), folder)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AdapterFileError, match="cannot write"):
        save_adapter(model, blocker / "adapter")


def test_a_file_saved_by_peft_passes_the_strict_checks_with_a_warning(tmp_path: Path) -> None:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    base = tiny_bert()
    peft_model = get_peft_model(
        copy.deepcopy(base),
        PeftLoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]),
    )
    randomize_lora(peft_model)
    peft_model.eval()
    peft_model.save_pretrained(tmp_path / "peft")
    with pytest.warns(UserWarning, match="no lorakit content checksum"):
        model = load_adapter(copy.deepcopy(base), tmp_path / "peft")
    assert torch.equal(logits(model, text_inputs()), logits(peft_model, text_inputs()))
