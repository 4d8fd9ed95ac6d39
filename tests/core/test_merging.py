"""merge / unmerge / merge_and_unload / unload / disable_adapters on every tiny model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import (
    assert_bit_identical,
    base_tensors,
    logits,
    module_classes,
    randomize_lora,
    tiny_gpt2,
    tiny_mixed,
)
from lorakit import (
    LoraConfig,
    LorakitError,
    MergeError,
    disable_adapters,
    inject,
    merge,
    merge_and_unload,
    unload,
    unmerge,
)
from lorakit.layers import LORA_TYPES, ModulesToSave
from lorakit.model import lora_layers


def adapted(any_model, **cfg) -> tuple[nn.Module, dict, torch.Tensor, dict[str, str]]:
    """(model with a random adapter, inputs, base logits, base module classes)."""
    _, model, inputs, targets = any_model
    base_out, classes = logits(model, inputs), module_classes(model)
    inject(model, LoraConfig(r=4, alpha=8, targets=targets, **cfg))
    randomize_lora(model)
    return model, inputs, base_out, classes


def test_merged_equals_unmerged(any_model) -> None:
    model, inputs, base_out, _ = adapted(any_model)
    unmerged = logits(model, inputs)
    assert not torch.allclose(unmerged, base_out)
    merge(model)
    assert all(layer.merged_adapters == ["default"] for _, layer in lora_layers(model))
    torch.testing.assert_close(logits(model, inputs), unmerged, rtol=0, atol=1e-5)


def test_unmerge_bit_exact_after_100_cycles(any_model) -> None:
    model, inputs, _, _ = adapted(any_model)
    before = base_tensors(model)
    unmerged = logits(model, inputs)
    for _ in range(100):
        merge(model)
        unmerge(model)
    assert_bit_identical(base_tensors(model), before)
    assert torch.equal(logits(model, inputs), unmerged)


def test_merge_and_unmerge_idempotent(any_model) -> None:
    model, _, _, _ = adapted(any_model)
    before = base_tensors(model)
    merge(model)
    once = base_tensors(model)
    merge(model)
    assert_bit_identical(base_tensors(model), once)
    assert any(not torch.equal(once[k], before[k]) for k in before)
    unmerge(model)
    unmerge(model)
    assert_bit_identical(base_tensors(model), before)


def test_merged_weight_is_w0_plus_scaled_ba() -> None:
    model = inject(tiny_gpt2(), LoraConfig(r=4, alpha=8, targets=["c_attn"]))
    randomize_lora(model)
    layer = model.transformer.h[0].attn.c_attn
    w0 = layer.base_layer.weight.detach().clone()
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    merge(model)
    # Conv1D stores (in, out): the delta is transposed.
    torch.testing.assert_close(layer.base_layer.weight, w0 + 2.0 * (b @ a).T, rtol=0, atol=1e-6)


def test_merge_and_unload_restores_classes(any_model) -> None:
    model, inputs, _, classes = adapted(any_model)
    merged_out = logits(model, inputs)
    out = merge_and_unload(model)
    assert out is model
    assert module_classes(model) == classes
    assert not any(isinstance(m, (*LORA_TYPES, ModulesToSave)) for m in model.modules())
    assert not any(".lora_" in n or "base_layer" in n for n, _ in model.named_parameters())
    assert "_lorakit" not in model.__dict__
    torch.testing.assert_close(logits(model, inputs), merged_out, rtol=0, atol=1e-5)


def test_merge_and_unload_keeps_trained_modules_to_save() -> None:
    from conftest import text_inputs, tiny_bert

    model, inputs = tiny_bert(), text_inputs()
    classes = module_classes(model)
    inject(model, LoraConfig(targets=["query"], modules_to_save=["classifier"]))
    randomize_lora(model)
    with torch.no_grad():
        model.classifier.modules_to_save["default"].weight.add_(1.0)
    out = logits(model, inputs)
    merge_and_unload(model)
    assert module_classes(model) == classes
    torch.testing.assert_close(logits(model, inputs), out, rtol=0, atol=1e-5)


def test_unload_gives_base_output(any_model) -> None:
    model, inputs, base_out, classes = adapted(any_model)
    before = base_tensors(model)
    merge(model)
    unload(model)
    assert module_classes(model) == classes
    assert_bit_identical(base_tensors(model), before)
    assert torch.equal(logits(model, inputs), base_out)


def test_disable_adapters_gives_base_output_exactly(any_model) -> None:
    model, inputs, base_out, _ = adapted(any_model)
    adapted_out = logits(model, inputs)
    with disable_adapters(model) as m:
        assert m is model
        assert torch.equal(logits(model, inputs), base_out)
    assert torch.equal(logits(model, inputs), adapted_out)


def test_disable_adapters_restores_after_error() -> None:
    model, inputs = (
        tiny_mixed(),
        {"ids": torch.zeros(1, 3, dtype=torch.long), "image": torch.ones(1, 1, 4, 4)},
    )
    inject(model, LoraConfig(targets=["mlp.0", "emb"]))
    randomize_lora(model)
    out = logits(model, inputs)
    with pytest.raises(RuntimeError), disable_adapters(model):
        raise RuntimeError("boom")
    assert torch.equal(logits(model, inputs), out)


def test_disable_while_merged_refused() -> None:
    model = inject(tiny_mixed(), LoraConfig(targets=["mlp.0"]))
    merge(model)
    with pytest.raises(LorakitError, match="unmerge first"), disable_adapters(model):
        pass


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_base_merges_in_float32_and_casts_back(dtype: torch.dtype) -> None:
    model = tiny_mixed().to(dtype)
    inject(model, LoraConfig(r=4, alpha=8, targets=["emb", "conv", "conv1", "mlp.0"]))
    randomize_lora(model)
    before = base_tensors(model)
    expected = {}
    for name, layer in lora_layers(model):
        w0 = layer.base_layer.weight.detach()
        expected[name] = (w0.float() + layer.delta_weight("default")).to(dtype)
        assert layer.delta_weight("default").dtype == torch.float32
    merge(model)
    for name, layer in lora_layers(model):
        assert layer.base_layer.weight.dtype == dtype
        assert torch.equal(layer.base_layer.weight, expected[name]), name
    unmerge(model)
    assert_bit_identical(base_tensors(model), before)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_merge_refuses_non_finite_delta_and_changes_nothing(any_model, bad: float) -> None:
    model, _, _, _ = adapted(any_model)
    before = base_tensors(model)
    # The last layer: earlier ones would already be merged if merging were not all-or-nothing.
    name, last = list(lora_layers(model))[-1]
    with torch.no_grad():
        last_b = [p for n, p in last.named_parameters() if "lora_B" in n or "lora_embedding_B" in n]
        last_b[0].view(-1)[0] = bad
    with pytest.raises(MergeError, match=name.replace(".", r"\.")) as info:
        merge(model)
    assert "non-finite" in str(info.value)
    assert_bit_identical(base_tensors(model), before)
    assert all(not layer.merged_adapters for _, layer in lora_layers(model))
    with pytest.raises(MergeError):
        merge_and_unload(model)
    assert_bit_identical(base_tensors(model), before)


def test_merge_refuses_fp16_overflow_and_changes_nothing() -> None:
    model = tiny_mixed().half()
    inject(model, LoraConfig(r=2, targets=["mlp.0", "mlp.2"]))
    with torch.no_grad():
        model.mlp[2].lora_A["default"].weight.fill_(300.0)
        model.mlp[2].lora_B["default"].weight.fill_(300.0)  # finite float32 delta, > fp16 max
    before = base_tensors(model)
    with pytest.raises(MergeError, match=r"mlp\.2.*overflow torch\.float16"):
        merge(model)
    assert_bit_identical(base_tensors(model), before)
    assert not model.mlp[0].merged_adapters


def test_train_and_eval_never_merge() -> None:
    model = inject(tiny_mixed(), LoraConfig(targets=["mlp.0"]))
    randomize_lora(model)
    before = base_tensors(model)
    model.train()
    model.eval()
    assert_bit_identical(base_tensors(model), before)
    assert not model.mlp[0].merged_adapters
