"""Quantized base models: LoRA on top trains, merges into float or re-quantized weights, stays small."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lorakit
from conftest import (
    MODELS,
    all_tensors,
    logits,
    module_classes,
    randomize_lora,
    tiny_llama,
)
from lorakit.errors import LorakitError, MergeError
from lorakit.quant import QuantConfig, QuantLinear

TARGETS = ["q_proj", "v_proj"]


def _quantized_llama(method: str = "nf4", **kw: object) -> tuple[nn.Module, lorakit.QuantReport]:
    model = tiny_llama()
    return model, lorakit.quantize_model(model, QuantConfig(method=method, **kw))


def test_quantize_replaces_linears_but_not_the_head_or_skipped() -> None:
    model, report = _quantized_llama(skip=["mlp.down_proj"])
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    assert kinds["model.layers.0.self_attn.q_proj"] == "QuantLinear"
    assert kinds["model.layers.1.mlp.up_proj"] == "QuantLinear"
    assert kinds["model.layers.0.mlp.down_proj"] == "Linear"
    assert kinds["lm_head"] == "Linear"
    assert len(report.modules) == 2 * 6
    params = {n for n, _ in model.named_parameters()}
    assert not any(f"{m}.weight" in params for m in report.modules)  # float weights released


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_quantized_output_is_close_to_float(kind: str) -> None:
    build, make_inputs, _ = MODELS[kind]
    inputs = make_inputs()
    reference = logits(build(), inputs)
    model = build()
    lorakit.quantize_model(model, "int8")
    assert (logits(model, inputs) - reference).abs().max() < 0.02
    model = build()
    lorakit.quantize_model(model, "nf4")
    nf4_gap = (logits(model, inputs) - reference).abs().max()
    assert 0 < nf4_gap < 0.2


def test_quantized_weights_take_at_most_016_of_float32() -> None:
    for dq in (False, True):
        model, report = _quantized_llama(double_quant=dq)
        measured = float_bytes = 0
        for _, m in model.named_modules():
            if isinstance(m, QuantLinear):
                measured += sum(b.untyped_storage().nbytes() for b in m.storage.buffers())
                float_bytes += m.in_features * m.out_features * 4
        assert measured == report.quantized_bytes and float_bytes == report.float32_bytes
        assert measured / float_bytes <= 0.16


def test_backward_saves_no_float_weight_and_gives_the_right_input_grad() -> None:
    w = torch.randn(48, 64)
    layer = QuantLinear(w, torch.randn(48), QuantConfig())
    x = torch.randn(5, 64, requires_grad=True)
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        y = layer(x)
    assert not any(n >= w.numel() for n in saved)  # only the storage object, never the float weight
    y.square().sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    (x2 @ layer.dequantize_weight().T + layer.bias).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


@pytest.mark.parametrize("method", ["nf4", "int8"])
def test_lora_on_quantized_base_trains(method: str) -> None:
    torch.manual_seed(0)
    model, _ = _quantized_llama(method, double_quant=method == "nf4")
    lorakit.inject(model, lorakit.LoraConfig(r=8, alpha=16.0))  # all-linear, on the quantized Linears
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if ".lora_" in n)
    ids = torch.randint(0, 99, (4, 16), generator=torch.Generator().manual_seed(5))
    labels = torch.full_like(ids, 7)  # learnable through the adapters alone (the head is frozen)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    # ln(99) = 4.6 at the start; the frozen tiny head caps what any adapter can reach near 3.9.
    assert losses[0] > 4.4 and min(losses[-3:]) < losses[0] - 0.4


def _lora_on_nf4(**cfg: object) -> tuple[nn.Module, dict]:
    model, _ = _quantized_llama()
    lorakit.inject(model, lorakit.LoraConfig(r=4, targets=TARGETS, **cfg))
    if not cfg.get("use_dora"):
        randomize_lora(model)  # (DoRA's magnitude must stay near ||W0||, so it keeps its init)
    inputs = MODELS["llama"][1]()
    return model, inputs


def test_merge_into_float_matches_unmerged_and_requantize_reports_error() -> None:
    model, inputs = _lora_on_nf4()
    with pytest.raises(MergeError, match="merge_and_unload_quantized"):
        lorakit.merge(model)
    unmerged = logits(model, inputs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    merged, report = lorakit.merge_and_unload_quantized(model, requantize=False)
    assert isinstance(merged.get_submodule("model.layers.0.self_attn.q_proj"), nn.Linear)
    assert (logits(merged, inputs) - unmerged).abs().max() < 1e-5
    assert report.max_relative_error == 0.0

    model, _ = _lora_on_nf4()
    model.load_state_dict(state)
    requant, report = lorakit.merge_and_unload_quantized(model, requantize=True)
    assert isinstance(requant.get_submodule("model.layers.0.self_attn.q_proj"), QuantLinear)
    assert len(report.relative_error) == 4
    assert 0.01 < report.max_relative_error < 0.2  # NF4 on Gaussian-like weights: ~10%
    gap = (logits(requant, inputs) - unmerged).abs().max()
    assert 0 < gap < 0.2


@pytest.mark.parametrize(
    ("skip", "poisoned"),
    [
        ([], "model.layers.1.self_attn.v_proj"),  # quantized base: found after layer 0 would be replaced
        (["v_proj"], "model.layers.1.self_attn.v_proj"),  # float base, merged by merge_and_unload
    ],
)
@pytest.mark.parametrize("requantize", [False, True])
def test_merge_quantized_refuses_a_non_finite_delta_and_changes_nothing(
    skip: list[str], poisoned: str, requantize: bool
) -> None:
    model = tiny_llama()
    lorakit.quantize_model(model, QuantConfig(method="nf4", skip=skip))
    lorakit.inject(model, lorakit.LoraConfig(r=4, targets=TARGETS))
    randomize_lora(model)
    with torch.no_grad():
        model.get_submodule(poisoned).lora_B["default"].weight[0, 0] = float("nan")
    before, classes = all_tensors(model), module_classes(model)
    with pytest.raises(MergeError, match=rf"into {poisoned}: its delta has 32 non-finite values"):
        lorakit.merge_and_unload_quantized(model, requantize=requantize)
    assert module_classes(model) == classes
    torch.testing.assert_close(all_tensors(model), before, rtol=0, atol=0, equal_nan=True)


def test_adapter_trained_on_nf4_loads_onto_the_float_base(tmp_path) -> None:
    model, _ = _lora_on_nf4()
    lorakit.save_adapter(model, tmp_path / "a")
    float_model = lorakit.load_adapter(tiny_llama(), tmp_path / "a")  # strict fingerprint check
    layer = float_model.get_submodule("model.layers.0.self_attn.q_proj")
    torch.testing.assert_close(
        layer.lora_B["default"].weight,
        model.get_submodule("model.layers.0.self_attn.q_proj").lora_B["default"].weight,
    )


def test_dora_on_quantized_base_equals_dora_on_its_dequantized_weights() -> None:
    model, inputs = _lora_on_nf4(use_dora=True)
    dense = tiny_llama()
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, QuantLinear):
                dense.get_submodule(name.removesuffix(".base_layer")).weight.copy_(m.dequantize_weight())
    lorakit.inject(dense, lorakit.LoraConfig(r=4, targets=TARGETS, use_dora=True))
    dense.load_state_dict({k: v for k, v in model.state_dict().items() if ".lora_" in k}, strict=False)
    assert (logits(model, inputs) - logits(dense, inputs)).abs().max() < 1e-5


def test_pissa_on_quantized_base_keeps_the_original_identity(tmp_path) -> None:
    model, _ = _lora_on_nf4(init="pissa")
    lorakit.save_adapter(model, tmp_path / "a")
    lorakit.load_adapter(tiny_llama(), tmp_path / "a")  # raises if the fingerprint named the residual


def test_quantize_after_inject_is_refused() -> None:
    model = lorakit.inject(tiny_llama(), lorakit.LoraConfig(targets=TARGETS))
    with pytest.raises(LorakitError, match="before inject"):
        lorakit.quantize_model(model, "nf4")


def test_quant_config_errors_name_the_field() -> None:
    with pytest.raises(lorakit.ConfigError, match=r"QuantConfig\.method = 'nf3'"):
        QuantConfig(method="nf3")
    with pytest.raises(lorakit.ConfigError, match="block_size"):
        QuantConfig(block_size=63)
