"""`lorakit inspect`: tree with target hits, trainable count and a memory estimate."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit.cli import main


def test_inspect_local_model(tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", str(tiny_dirs["llama"]), "--targets", "q_proj", "v_proj", "--r", "4"]) == 0
    out = capsys.readouterr().out
    assert "LlamaForCausalLM" in out and "<-- LoRA target" in out
    assert "more blocks like model.layers.0" in out
    # 2 layers x (q: 4*32 + 32*4, v: 4*32 + 16*4) = 2 x 448
    assert "trainable params: 896 " in out
    # k, o, gate, up, down of 2 layers and the LM head; the adapted q and v stay LoRA layers
    assert "11 frozen Linear layers as FrozenLinear (e.g. model.layers.0.self_attn.k_proj" in out
    assert "2 MLPs as GatedMLP" in out
    assert "estimated training memory" in out and "activations_with_gradient_checkpointing" in out


def test_inspect_bad_target(tiny_dirs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", str(tiny_dirs["bert"]), "--targets", "qeury"]) == 2
    err = capsys.readouterr().err
    assert "'qeury' matches no module" in err and "query" in err
