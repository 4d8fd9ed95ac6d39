"""Issue 12 item 10: a GGUF model is de-quantised once, cached as safetensors keyed by the file's
SHA-256, and later starts load the cache (same tensors, bit for bit) and say what is loading."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from lorakit import gguf_cache
from lorakit.cli import main
from lorakit.model_sources import load_pretrained, load_tokenizer, resolve_model
from tiny_assets import make_gguf


@pytest.fixture
def gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LORAKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LORAKIT_GGUF_CACHE", raising=False)
    return make_gguf(tmp_path / "model" / "tiny.gguf")


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_first_load_fills_the_cache_and_later_loads_read_it(
    gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ref = resolve_model(str(gguf))
    with caplog.at_level(logging.INFO, logger="lorakit"):
        first = load_pretrained(ref, AutoModelForCausalLM)
    assert "de-quantising tiny.gguf to float32 (first start only" in caplog.text
    (entry,) = (tmp_path / "cache" / "gguf").iterdir()
    assert entry.name.startswith(hashlib.sha256(gguf.read_bytes()).hexdigest()[:32])
    files = {p.name for p in entry.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", gguf_cache.MARKER} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".tmp"))]
    assert "quantization_config" not in (entry / "config.json").read_text()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lorakit"):
        second = load_pretrained(ref, AutoModelForCausalLM)
        tokenizer = load_tokenizer(ref)
    assert f"using the de-quantised copy cached in {entry}" in caplog.text
    assert "de-quantising" not in caplog.text

    monkeypatch.setenv("LORAKIT_GGUF_CACHE", "0")  # straight from the GGUF file, as before
    direct = load_pretrained(ref, AutoModelForCausalLM)
    direct_tokenizer = load_tokenizer(ref)
    for name, tensor in state(direct).items():
        assert torch.equal(state(first)[name], tensor), name
        assert torch.equal(state(second)[name], tensor), name
    text = "a b c d"
    assert tokenizer(text)["input_ids"] == direct_tokenizer(text)["input_ids"]


def test_another_file_gets_its_own_entry_and_a_broken_entry_is_rebuilt(gguf: Path, tmp_path: Path) -> None:
    load_tokenizer(resolve_model(str(gguf)))
    (entry,) = (tmp_path / "cache" / "gguf").iterdir()
    (entry / gguf_cache.MARKER).unlink()  # e.g. a copy cut short: never used
    load_tokenizer(resolve_model(str(gguf)))
    assert (entry / gguf_cache.MARKER).is_file()
    other = gguf.with_name("other.gguf")
    other.write_bytes(gguf.read_bytes() + b"\0" * 32)  # same model, other bytes: another hash
    load_tokenizer(resolve_model(str(other)))
    assert len(list((tmp_path / "cache" / "gguf").iterdir())) == 2


def test_the_cli_says_what_is_loading(gguf: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", str(gguf), "--targets", "q_proj"]) == 0
    err = capsys.readouterr().err
    assert "lorakit: " in err and "de-quantising tiny.gguf" in err
    assert main(["inspect", str(gguf), "--targets", "q_proj"]) == 0
    err = capsys.readouterr().err
    assert "using the de-quantised copy cached in" in err
    assert f"loading {gguf} (AutoModelForCausalLM)" in err


def test_cache_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LORAKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf_cache.cache_root() == tmp_path / "xdg" / "lorakit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert gguf_cache.cache_root() == tmp_path / "home" / ".cache" / "lorakit"
    monkeypatch.setenv("LORAKIT_CACHE_DIR", str(tmp_path / "mine"))
    assert gguf_cache.cache_root() == tmp_path / "mine"
