"""PEFT is the oracle: lorakit files load in PEFT, PEFT files load in lorakit, same logits."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import logits, randomize_lora, text_inputs, tiny_bert, tiny_gpt2, tiny_llama
from lorakit import LoraConfig, inject, load_adapter, save_adapter

peft = pytest.importorskip("peft")

BUILD = {"bert": tiny_bert, "gpt2": tiny_gpt2, "llama": tiny_llama}
NAMES = {"bert": ["query", "value"], "gpt2": ["c_attn", "c_fc"], "llama": ["q_proj", "v_proj", "down_proj"]}
TOL = {"rtol": 0, "atol": 1e-5}

CASES = [(model, "names", {}) for model in BUILD] + [(model, "all-linear", {}) for model in BUILD]
CASES += [
    ("bert", "names", {"modules_to_save": ["classifier"]}),
    ("llama", "names", {"rank_pattern": {"v_proj": 2}, "alpha_pattern": {"q_proj": 32.0}}),
    ("gpt2", "names", {"use_rslora": True, "rank_pattern": {"c_fc": 6}}),
    ("bert", "all-linear", {"bias": "lora_only"}),
    ("gpt2", "names", {"bias": "all"}),
    # Two keys match layers.1.q_proj: the first in order wins, as in PEFT.
    ("llama", "names", {"alpha_pattern": {r"layers\.1\..*q_proj": 4.0, "q_proj": 32.0}}),
]
IDS = [f"{m}-{t}-{'-'.join(sorted(e)) or 'plain'}" for m, t, e in CASES]


def targets(model_name: str, kind: str) -> list[str] | str:
    return NAMES[model_name] if kind == "names" else "all-linear"


def perturb_trainables(model: nn.Module) -> None:
    """Non-zero LoRA tensors, and changed modules_to_save / bias so they matter for the logits."""
    randomize_lora(model, seed=7)
    g = torch.Generator().manual_seed(8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" not in name and p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize(("model_name", "kind", "extra"), CASES, ids=IDS)
def test_lorakit_save_peft_load(tmp_path: Path, model_name: str, kind: str, extra: dict) -> None:
    build, inputs = BUILD[model_name], text_inputs()
    model = inject(build(), LoraConfig(r=4, alpha=8, targets=targets(model_name, kind), **extra))
    perturb_trainables(model)
    ours = logits(model, inputs)
    save_adapter(model, tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*fan_in_fan_out")
        theirs_model = peft.PeftModel.from_pretrained(build(), str(tmp_path))
    theirs = logits(theirs_model, inputs)
    assert not torch.allclose(ours, logits(build(), inputs))
    torch.testing.assert_close(theirs, ours, **TOL)


def peft_config(model_name: str, kind: str, extra: dict) -> object:
    kwargs = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": targets(model_name, kind),
        "modules_to_save": extra.get("modules_to_save"),
        "rank_pattern": extra.get("rank_pattern", {}),
        "alpha_pattern": extra.get("alpha_pattern", {}),
        "use_rslora": extra.get("use_rslora", False),
        "bias": extra.get("bias", "none"),
        "fan_in_fan_out": model_name == "gpt2",
    }
    if model_name == "bert" and kind == "all-linear":
        kwargs["task_type"] = "SEQ_CLS"  # PEFT then keeps the classifier out of all-linear
    return peft.LoraConfig(**kwargs)


@pytest.mark.parametrize(("model_name", "kind", "extra"), CASES, ids=IDS)
def test_peft_save_lorakit_load(tmp_path: Path, model_name: str, kind: str, extra: dict) -> None:
    build, inputs = BUILD[model_name], text_inputs()
    theirs_model = peft.get_peft_model(build(), peft_config(model_name, kind, extra))
    perturb_trainables(theirs_model)
    theirs = logits(theirs_model, inputs)
    theirs_model.save_pretrained(str(tmp_path))
    with pytest.warns(UserWarning, match="no base-model fingerprint"):
        model = load_adapter(build(), tmp_path)
    assert not torch.allclose(theirs, logits(build(), inputs))
    torch.testing.assert_close(logits(model, inputs), theirs, **TOL)
    # and back again: lorakit re-saves what it loaded, PEFT reads it.
    save_adapter(model, tmp_path / "again")
    again = peft.PeftModel.from_pretrained(build(), str(tmp_path / "again"))
    torch.testing.assert_close(logits(again, inputs), theirs, **TOL)


def test_peft_regex_targets(tmp_path: Path) -> None:
    build, inputs = tiny_llama, text_inputs()
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=r".*\.layers\.1\..*(k_proj|up_proj)")
    theirs_model = peft.get_peft_model(build(), cfg)
    perturb_trainables(theirs_model)
    theirs_model.save_pretrained(str(tmp_path))
    with pytest.warns(UserWarning):
        model = load_adapter(build(), tmp_path)
    torch.testing.assert_close(logits(model, inputs), logits(theirs_model, inputs), **TOL)


def test_peft_layers_to_transform(tmp_path: Path) -> None:
    build, inputs = tiny_llama, text_inputs()
    full = "model.layers.0.self_attn.v_proj"  # an exact name is adapted whatever the layer filter
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", full], layers_to_transform=[1])
    theirs_model = peft.get_peft_model(build(), cfg)
    perturb_trainables(theirs_model)
    theirs_model.save_pretrained(str(tmp_path))
    with pytest.warns(UserWarning):
        model = load_adapter(build(), tmp_path)
    torch.testing.assert_close(logits(model, inputs), logits(theirs_model, inputs), **TOL)
    assert type(model.model.layers[0].self_attn.q_proj) is nn.Linear
    assert type(model.model.layers[0].self_attn.v_proj) is not nn.Linear


def test_embedding_and_conv_layers_both_ways(tmp_path: Path) -> None:
    from conftest import mixed_inputs, tiny_mixed

    inputs, targets = mixed_inputs(), ["emb", "conv", "conv1", "mlp.0"]
    model = inject(tiny_mixed(), LoraConfig(r=2, alpha=4, targets=targets))
    perturb_trainables(model)
    save_adapter(model, tmp_path / "ours")
    theirs_model = peft.PeftModel.from_pretrained(tiny_mixed(), str(tmp_path / "ours"))
    torch.testing.assert_close(logits(theirs_model, inputs), logits(model, inputs), **TOL)

    theirs_model = peft.get_peft_model(
        tiny_mixed(), peft.LoraConfig(r=2, lora_alpha=4, target_modules=targets)
    )
    perturb_trainables(theirs_model)
    theirs_model.save_pretrained(str(tmp_path / "theirs"))
    with pytest.warns(UserWarning, match="no base-model fingerprint"):
        ours = load_adapter(tiny_mixed(), tmp_path / "theirs")
    torch.testing.assert_close(logits(ours, inputs), logits(theirs_model, inputs), **TOL)


def test_hand_written_all_linear_config_loads_like_peft(tmp_path: Path) -> None:
    import json

    build, inputs = tiny_gpt2, text_inputs()
    theirs_model = peft.get_peft_model(
        build(), peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", fan_in_fan_out=True)
    )
    perturb_trainables(theirs_model)
    theirs_model.save_pretrained(str(tmp_path))
    raw = json.loads((tmp_path / "adapter_config.json").read_text())
    raw["target_modules"] = "all-linear"  # as a person would write it; PEFT saves the expanded names
    (tmp_path / "adapter_config.json").write_text(json.dumps(raw))
    with pytest.warns(UserWarning):
        model = load_adapter(build(), tmp_path)
    torch.testing.assert_close(logits(model, inputs), logits(theirs_model, inputs), **TOL)
