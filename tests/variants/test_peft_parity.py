"""rsLoRA and DoRA against PEFT: same weights, same outputs and gradients, files both ways."""

from __future__ import annotations

import warnings

import pytest
import torch

import lorakit
from conftest import MODELS, logits
from variants.peft_oracle import (
    lorakit_grads,
    loss_of,
    peft_grads,
    peft_load,
    peft_random,
    perturb_magnitudes,
    randomize_ab,
)

TOL = 1e-5
TEXT_MODELS = ["bert", "gpt2", "llama"]
VARIANTS = {
    "rslora": {"use_rslora": True},
    "dora": {"use_dora": True},
    "dora_rslora": {"use_dora": True, "use_rslora": True},
}


def _lorakit_model(kind: str, variant: dict) -> tuple:
    build, make_inputs, targets = MODELS[kind]
    model = build()
    cfg = lorakit.LoraConfig(r=4, alpha=6.0, targets=targets, **variant)
    lorakit.inject(model, cfg)
    randomize_ab(model)
    perturb_magnitudes(model)
    return build, make_inputs(), targets, model


# Every model with rsLoRA and DoRA; the combination on the Conv1D model only (keeps the suite fast).
CASES = [(k, v) for k in TEXT_MODELS for v in ("rslora", "dora")] + [("gpt2", "dora_rslora")]


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_lorakit_adapter_runs_identically_in_peft(kind: str, variant: str, tmp_path) -> None:
    build, inputs, _, model = _lorakit_model(kind, VARIANTS[variant])
    lorakit.save_adapter(model, tmp_path / "a")
    peft_model = peft_load(build, tmp_path / "a", trainable=True)
    assert (logits(model, inputs) - logits(peft_model, inputs)).abs().max() < TOL
    # Gradients too: the detached weight norm must be detached in both.
    loss_of(model, inputs).backward()
    loss_of(peft_model, inputs).backward()
    ours, theirs = lorakit_grads(model), peft_grads(peft_model)
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=TOL, rtol=1e-4, msg=name)


@pytest.mark.parametrize(("kind", "variant"), CASES)
def test_peft_adapter_loads_into_lorakit(kind: str, variant: str, tmp_path) -> None:
    build, make_inputs, targets = MODELS[kind]
    extra = VARIANTS[variant]
    peft_model = peft_random(build, targets, tmp_path / "p", r=4, lora_alpha=6, **extra)
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no lorakit fingerprint in a PEFT file
        lorakit.load_adapter(model, tmp_path / "p")
    cfg = lorakit.model.adapter_state(model).configs["default"]
    assert cfg.use_dora == extra.get("use_dora", False) and cfg.use_rslora == extra.get("use_rslora", False)
    inputs = make_inputs()
    assert (logits(model, inputs) - logits(peft_model, inputs)).abs().max() < TOL


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_dora_dropout_path_matches_peft_in_training(kind: str, tmp_path) -> None:
    build, inputs, _, model = _lorakit_model(kind, {"use_dora": True, "dropout": 0.3})
    lorakit.save_adapter(model, tmp_path / "a")
    peft_model = peft_load(build, tmp_path / "a", trainable=True)
    model.train()
    peft_model.train()
    torch.manual_seed(7)
    ours = loss_of(model, inputs)
    torch.manual_seed(7)
    theirs = loss_of(peft_model, inputs)
    assert abs(ours.item() - theirs.item()) < TOL
    ours.backward()
    theirs.backward()
    for name, grad in lorakit_grads(model).items():
        torch.testing.assert_close(grad, peft_grads(peft_model)[name], atol=TOL, rtol=1e-4, msg=name)


def test_rslora_scaling_is_alpha_over_sqrt_r() -> None:
    build, _, targets = MODELS["llama"]
    model = lorakit.inject(build(), lorakit.LoraConfig(r=16, alpha=8.0, targets=targets, use_rslora=True))
    layer = model.get_submodule("model.layers.0.self_attn.q_proj")
    assert layer.scaling["default"] == pytest.approx(8.0 / 4.0)
