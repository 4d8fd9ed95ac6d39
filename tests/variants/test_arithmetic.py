"""add_weighted_adapter: cat is exact, svd error is reported and falls with rank, linear follows PEFT."""

from __future__ import annotations

import itertools

import pytest
import torch

import lorakit
from conftest import MODELS, logits, randomize_lora
from lorakit.errors import ConfigError, LorakitError
from lorakit.model import lora_layers


def _two_adapters(kind: str = "llama", ra: int = 4, rb: int = 6) -> torch.nn.Module:
    build, _, targets = MODELS[kind]
    model = lorakit.inject(build(), lorakit.LoraConfig(r=ra, alpha=8.0, targets=targets), "a")
    lorakit.add_adapter(model, "b", lorakit.LoraConfig(r=rb, alpha=3.0, targets=targets, use_rslora=True))
    randomize_lora(model, seed=2, scale=0.3)
    return model


def _deltas(model: torch.nn.Module, name: str) -> dict[str, torch.Tensor]:
    return {p: layer.delta_weight(name) for p, layer in lora_layers(model) if name in layer.adapter_names()}


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cat_is_exactly_the_weighted_sum_of_deltas(kind: str) -> None:
    model = _two_adapters(kind)
    report = lorakit.add_weighted_adapter(model, {"a": 0.7, "b": -0.3}, "ab", method="cat")
    da, db, dab = _deltas(model, "a"), _deltas(model, "b"), _deltas(model, "ab")
    assert dab.keys() == da.keys()
    for path in dab:
        torch.testing.assert_close(dab[path], 0.7 * da[path] - 0.3 * db[path], atol=1e-6, rtol=1e-5)
        assert report.ranks[path] == 10
    assert report.relative_error == 0.0


def test_cat_adapter_output_equals_merging_both(tmp_path) -> None:
    build, make_inputs, _ = MODELS["llama"]
    inputs = make_inputs()
    model = _two_adapters()
    lorakit.add_weighted_adapter(model, {"a": 1.0, "b": 1.0}, "ab", method="cat")
    lorakit.set_adapter(model, "ab")
    combined = logits(model, inputs)
    lorakit.save_adapter(model, tmp_path / "ab")
    lorakit.merge(model, ["a", "b"])
    for _, layer in lora_layers(model):
        layer.active_adapters = []
    assert (logits(model, inputs) - combined).abs().max() < 1e-5
    loaded = lorakit.load_adapter(build(), tmp_path / "ab")
    assert (logits(loaded, inputs) - combined).abs().max() < 1e-5


def test_svd_error_is_reported_and_falls_with_rank() -> None:
    model = _two_adapters()
    errors = []
    for rank in (1, 2, 4, 7, 10):
        report = lorakit.add_weighted_adapter(model, {"a": 0.7, "b": 0.3}, f"s{rank}", "svd", svd_rank=rank)
        errors.append(report.relative_error)
        # The reported error is the real distance to the weighted sum.
        da, db, ds = _deltas(model, "a"), _deltas(model, "b"), _deltas(model, f"s{rank}")
        exact = {p: 0.7 * da[p] + 0.3 * db[p] for p in da}
        num = sum(float(torch.linalg.norm(ds[p] - exact[p])) ** 2 for p in da)
        den = sum(float(torch.linalg.norm(exact[p])) ** 2 for p in da)
        assert report.relative_error == pytest.approx((num / den) ** 0.5, rel=1e-3, abs=1e-5)
    assert all(later < earlier for earlier, later in itertools.pairwise(errors))
    assert errors[0] > 0.1 and errors[-1] < 1e-5  # rank 10 = ra + rb reproduces the sum


def test_linear_matches_peft_definition_and_needs_equal_ranks() -> None:
    model = _two_adapters(rb=4)
    lorakit.add_weighted_adapter(model, {"a": 0.7, "b": 0.3}, "lin", method="linear")
    for _, layer in lora_layers(model):
        sa, sb = layer.scaling["a"], layer.scaling["b"]
        a = (0.7 * sa) ** 0.5 * layer.lora_A["a"].weight + (0.3 * sb) ** 0.5 * layer.lora_A["b"].weight
        b = (0.7 * sa) ** 0.5 * layer.lora_B["a"].weight + (0.3 * sb) ** 0.5 * layer.lora_B["b"].weight
        torch.testing.assert_close(layer.delta_weight("lin"), (b @ a).detach())
    uneven = _two_adapters(rb=6)
    with pytest.raises(LorakitError, match="same rank"):
        lorakit.add_weighted_adapter(uneven, {"a": 0.5, "b": 0.5}, "lin", method="linear")
    assert "lin" not in lorakit.model.adapter_state(uneven).configs


def test_bad_requests_are_config_errors() -> None:
    model = _two_adapters()
    with pytest.raises(ConfigError, match="no adapter named 'zzz'"):
        lorakit.add_weighted_adapter(model, {"zzz": 1.0}, "n", method="cat")
    with pytest.raises(ConfigError, match="method = 'sum'"):
        lorakit.add_weighted_adapter(model, {"a": 1.0}, "n", method="sum")
    with pytest.raises(ConfigError, match="svd_rank"):
        lorakit.add_weighted_adapter(model, {"a": 1.0}, "n", method="cat", svd_rank=2)
    with pytest.raises(ConfigError, match="already exists"):
        lorakit.add_weighted_adapter(model, {"a": 1.0}, "b", method="cat")
    dora = lorakit.inject(MODELS["llama"][0](), lorakit.LoraConfig(targets=["q_proj"], use_dora=True))
    with pytest.raises(ConfigError, match="only plain LoRA"):
        lorakit.add_weighted_adapter(dora, {"default": 1.0}, "n", method="cat")
