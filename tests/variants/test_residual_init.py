"""pissa / olora: output unchanged at init, and the saved adapter works on the ORIGINAL base."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import lorakit
from conftest import MODELS, logits
from lorakit.errors import TargetError
from lorakit.layers.dense import weight_oi
from variants.peft_oracle import peft_load

TOL = 1e-5


def _train_a_little(model: torch.nn.Module, inputs: dict, steps: int = 3) -> None:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        out = model(**inputs)
        (out.logits.float() ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.mark.parametrize("init", ["pissa", "olora"])
@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_output_equals_base_at_init(kind: str, init: str) -> None:
    build, make_inputs, targets = MODELS[kind]
    inputs = make_inputs()
    reference = logits(build(), inputs)
    model = lorakit.inject(build(), lorakit.LoraConfig(r=4, alpha=8.0, targets=targets, init=init))
    assert (logits(model, inputs) - reference).abs().max() < TOL
    layer = next(layer for _, layer in lorakit.model.lora_layers(model))
    assert layer.lora_B["default"].weight.abs().sum() > 0  # not the zero-B init in disguise


def test_pissa_factors_are_the_top_singular_triplets() -> None:
    build, _, targets = MODELS["llama"]
    original = build().get_submodule("model.layers.0.self_attn.q_proj").weight.detach().clone()
    model = lorakit.inject(build(), lorakit.LoraConfig(r=3, alpha=6.0, targets=targets, init="pissa"))
    layer = model.get_submodule("model.layers.0.self_attn.q_proj")
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    u, s, vh = torch.linalg.svd(original)
    top = (u[:, :3] * s[:3]) @ vh[:3]
    torch.testing.assert_close(layer.scaling["default"] * (b @ a), top, atol=1e-5, rtol=1e-5)
    residual = weight_oi(layer.base_layer)
    torch.testing.assert_close(residual, original - top, atol=1e-5, rtol=1e-5)
    assert torch.linalg.norm(residual) < torch.linalg.norm(original)


@pytest.mark.parametrize(
    ("kind", "init", "extra"),
    [
        ("bert", "pissa", {}),
        ("gpt2", "pissa", {}),
        ("llama", "pissa", {}),
        ("gpt2", "olora", {}),
        ("llama", "olora", {}),
        ("llama", "pissa", {"use_rslora": True}),
    ],
)
def test_trained_adapter_loads_onto_original_base(kind: str, init: str, extra: dict, tmp_path) -> None:
    build, make_inputs, targets = MODELS[kind]
    inputs = make_inputs()
    cfg = lorakit.LoraConfig(r=4, alpha=8.0, targets=targets, init=init, **extra)
    model = lorakit.inject(build(), cfg)
    _train_a_little(model, inputs)
    trained = logits(model, inputs)
    lorakit.save_adapter(model, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert saved["r"] == 8 and saved["init_lora_weights"] is True
    # Strict fingerprint check: the file must name the original base, not the residual.
    loaded = lorakit.load_adapter(build(), tmp_path / "a")
    assert (logits(loaded, inputs) - trained).abs().max() < TOL
    assert (logits(peft_load(build, tmp_path / "a"), inputs) - trained).abs().max() < TOL


def test_pissa_with_dora_round_trip(tmp_path) -> None:
    build, make_inputs, targets = MODELS["gpt2"]
    inputs = make_inputs()
    model = lorakit.inject(build(), lorakit.LoraConfig(r=4, targets=targets, init="pissa", use_dora=True))
    _train_a_little(model, inputs)
    lorakit.save_adapter(model, tmp_path / "a")
    loaded = lorakit.load_adapter(build(), tmp_path / "a")
    assert (logits(loaded, inputs) - logits(model, inputs)).abs().max() < TOL


def test_residual_base_is_restored_when_the_adapter_goes() -> None:
    build, make_inputs, targets = MODELS["llama"]
    inputs = make_inputs()
    reference = logits(build(), inputs)
    cfg = lorakit.LoraConfig(r=4, targets=targets, init="olora")
    model = lorakit.unload(lorakit.inject(build(), cfg))
    assert (logits(model, inputs) - reference).abs().max() < TOL
    model = lorakit.inject(build(), lorakit.LoraConfig(r=4, targets=targets, init="pissa"))
    lorakit.add_adapter(model, "other", lorakit.LoraConfig(r=2, targets=targets))
    lorakit.delete_adapter(model, "default")
    with lorakit.disable_adapters(model):
        assert (logits(model, inputs) - reference).abs().max() < TOL


def test_residual_init_must_come_first_and_fit_the_rank() -> None:
    build, _, targets = MODELS["llama"]
    model = lorakit.inject(build(), lorakit.LoraConfig(r=4, targets=targets))
    with pytest.raises(TargetError, match="must be the first adapter"):
        lorakit.add_adapter(model, "p", lorakit.LoraConfig(r=4, targets=targets, init="pissa"))
    with pytest.raises(TargetError, match="exceeds min"):
        lorakit.inject(build(), lorakit.LoraConfig(r=40, targets=targets, init="olora"))


def test_peft_pissa_file_loads_with_same_semantics(tmp_path) -> None:
    """A PEFT adapter saved with init_lora_weights='pissa' (unconverted) needs the residual base."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    build, make_inputs, targets = MODELS["llama"]
    inputs = make_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(
            build(), PeftLoraConfig(r=4, target_modules=targets, init_lora_weights="pissa")
        )
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.mul_(1.5)
        peft_model.save_pretrained(str(tmp_path / "p"))
        model = lorakit.load_adapter(build(), tmp_path / "p")
    assert (logits(model, inputs) - logits(peft_model, inputs)).abs().max() < TOL
