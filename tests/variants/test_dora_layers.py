"""DoRA inside lorakit: initial magnitude, merge == unmerged, bit-exact unmerge, file round trips."""

from __future__ import annotations

import pytest
import torch

import lorakit
from conftest import MODELS, logits
from lorakit.errors import TargetError
from lorakit.layers.dense import weight_oi
from variants.peft_oracle import perturb_magnitudes, randomize_ab

TOL = 1e-5


def _dora(kind: str, **extra: object) -> tuple:
    build, make_inputs, targets = MODELS[kind]
    model = lorakit.inject(
        build(), lorakit.LoraConfig(r=4, alpha=8.0, targets=targets, use_dora=True, **extra)
    )
    randomize_ab(model)
    perturb_magnitudes(model)
    return build, make_inputs(), model


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_magnitude_starts_at_row_norm_and_output_at_base(kind: str) -> None:
    build, make_inputs, targets = MODELS[kind]
    base = build()
    model = lorakit.inject(build(), lorakit.LoraConfig(r=4, targets=targets, use_dora=True))
    inputs = make_inputs()
    assert (logits(model, inputs) - logits(base, inputs)).abs().max() < TOL
    layers = list(lorakit.model.lora_layers(model))
    for _, layer in layers:
        m = layer.lora_magnitude_vector["default"].weight
        torch.testing.assert_close(m, torch.linalg.norm(weight_oi(layer.base_layer).float(), dim=1))
        assert m.requires_grad
    summary = lorakit.trainable_summary(model)
    lora_ab = sum(layer.r["default"] * (layer.in_features + layer.out_features) for _, layer in layers)
    assert summary.trainable == lora_ab + sum(layer.out_features for _, layer in layers)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_merged_equals_unmerged_and_unmerge_is_bit_exact(kind: str) -> None:
    _, inputs, model = _dora(kind)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    unmerged = logits(model, inputs)
    lorakit.merge(model)
    assert (logits(model, inputs) - unmerged).abs().max() < TOL
    lorakit.unmerge(model)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    assert (logits(lorakit.merge_and_unload(model), inputs) - unmerged).abs().max() < TOL


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_lorakit_round_trip_keeps_dora(kind: str, tmp_path) -> None:
    build, inputs, model = _dora(kind)
    lorakit.save_adapter(model, tmp_path / "a")
    loaded = lorakit.load_adapter(build(), tmp_path / "a")
    assert (logits(loaded, inputs) - logits(model, inputs)).abs().max() < TOL
    keys = [k for k in lorakit.adapter_io.keys.adapter_entries(loaded, "default") if "magnitude" in k]
    assert keys and all(k.endswith(".lora_magnitude_vector") for k in keys)


def test_dora_magnitude_trains_and_changes_output() -> None:
    _, inputs, model = _dora("llama")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    start = logits(model, inputs)
    model.train()
    out = model(**inputs).logits
    (out**2).mean().backward()
    grads = [p.grad for n, p in model.named_parameters() if "magnitude" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    opt.step()
    model.eval()
    assert (logits(model, inputs) - start).abs().max() > 1e-4


def test_dora_refuses_non_linear_targets() -> None:
    build, _, _ = MODELS["mixed"]
    model = build()
    with pytest.raises(TargetError, match="use_dora=True supports only"):
        lorakit.inject(model, lorakit.LoraConfig(targets=["emb"], use_dora=True))
    assert not lorakit.model.has_adapters(model)


def test_use_dora_without_magnitudes_is_a_clear_file_error(tmp_path) -> None:
    import json

    build, _, targets = MODELS["bert"]
    model = lorakit.inject(build(), lorakit.LoraConfig(r=4, targets=targets))
    lorakit.save_adapter(model, tmp_path / "a")
    path = tmp_path / "a" / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "use_dora": True}))
    fresh = build()
    with pytest.raises(lorakit.AdapterFileError, match=r"use_dora=true, but .* no lora_magnitude_vector"):
        lorakit.load_adapter(fresh, tmp_path / "a")
    assert not lorakit.model.has_adapters(fresh)
