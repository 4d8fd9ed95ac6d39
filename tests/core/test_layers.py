"""The LoRA wrappers: exact identity at init, the h = W0 x + s * B A x math, supported types."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import logits, randomize_lora, tiny_bert, tiny_mixed
from lorakit import LoraConfig, TargetError, inject
from lorakit.layers import LoraConv, LoraEmbedding, LoraLinear, wrap


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_fresh_adapter_equals_base_exactly(any_model, init: str) -> None:
    _, model, inputs, targets = any_model
    before = logits(model, inputs)
    inject(model, LoraConfig(r=4, alpha=8, targets=targets, init=init))
    assert torch.equal(logits(model, inputs), before)


def test_nonzero_b_changes_output(any_model) -> None:
    _, model, inputs, targets = any_model
    before = logits(model, inputs)
    inject(model, LoraConfig(r=4, alpha=8, targets=targets))
    randomize_lora(model)
    assert not torch.allclose(logits(model, inputs), before)


def test_linear_math_and_shapes() -> None:
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = wrap(base, "fc")
    assert isinstance(layer, LoraLinear) and layer.base_layer is base
    layer.add_adapter("default", 3, scaling=2.0, dropout=0.0, init="kaiming")
    layer.active_adapters = ["default"]
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert a.shape == (3, 6) and b.shape == (5, 3)
    assert a.dtype == b.dtype == torch.float32
    assert torch.count_nonzero(b) == 0 and torch.count_nonzero(a) == a.numel()
    # kaiming_uniform(a=sqrt(5)) bound: 1 / sqrt(fan_in)
    assert a.abs().max() <= 1 / math.sqrt(6)
    with torch.no_grad():
        b.normal_()
    x = torch.randn(4, 6)
    expected = base(x) + 2.0 * (x @ a.T @ b.T)
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer.delta_weight("default"), 2.0 * b @ a)


def test_gpt2_conv1d_is_handled_transposed() -> None:
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    base = Conv1D(nf=7, nx=4)  # weight (in=4, out=7)
    nn.init.normal_(base.weight)
    layer = wrap(base, "c_attn")
    assert isinstance(layer, LoraLinear) and layer.fan_in_fan_out
    assert (layer.in_features, layer.out_features) == (4, 7)
    layer.add_adapter("default", 2, scaling=1.0, dropout=0.0, init="kaiming")
    layer.active_adapters = ["default"]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    x = torch.randn(3, 4)
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    torch.testing.assert_close(layer(x), base(x) + x @ a.T @ b.T, rtol=0, atol=1e-5)
    assert layer.delta_weight("default").shape == base.weight.shape


def test_embedding_math() -> None:
    torch.manual_seed(0)
    base = nn.Embedding(10, 4, padding_idx=0)
    layer = wrap(base, "emb")
    assert isinstance(layer, LoraEmbedding)
    layer.add_adapter("default", 2, scaling=2.0, dropout=0.0, init="kaiming")
    layer.active_adapters = ["default"]
    a, b = layer.lora_embedding_A["default"], layer.lora_embedding_B["default"]
    assert a.shape == (2, 10) and b.shape == (4, 2) and torch.count_nonzero(a) == 0
    with torch.no_grad():
        a.normal_()
    ids = torch.tensor([[0, 3, 9]])
    expected = base(ids) + 2.0 * (a.T[ids] @ b.T)
    torch.testing.assert_close(layer(ids), expected)
    torch.testing.assert_close(layer.delta_weight("default"), 2.0 * (b @ a).T)


@pytest.mark.parametrize("conv", [nn.Conv1d, nn.Conv2d])
def test_conv_delta_matches_forward(conv: type[nn.Module]) -> None:
    torch.manual_seed(0)
    base = conv(3, 5, 3, stride=2, padding=1)
    layer = wrap(base, "conv")
    assert isinstance(layer, LoraConv)
    layer.add_adapter("default", 2, scaling=1.0, dropout=0.0, init="kaiming")
    layer.active_adapters = ["default"]
    assert layer.lora_A["default"].weight.shape[:2] == (2, 3)
    assert layer.lora_B["default"].weight.shape[:2] == (5, 2)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    x = torch.randn(2, 3, *([9] * (1 if conv is nn.Conv1d else 2)))
    fwd = conv.__dict__["_conv_forward"]
    merged_out = fwd(base, x, base.weight + layer.delta_weight("default"), base.bias)
    torch.testing.assert_close(layer(x), merged_out, rtol=0, atol=1e-5)


def test_grouped_conv_refused() -> None:
    with pytest.raises(TargetError, match="groups=2"):
        wrap(nn.Conv2d(4, 4, 3, groups=2), "conv")


def test_unsupported_type_is_named() -> None:
    model = tiny_bert()
    with pytest.raises(TargetError) as info:
        inject(model, LoraConfig(targets=["attention.output.LayerNorm"]))
    msg = str(info.value)
    assert "LayerNorm" in msg and "cannot adapt" in msg and "nn.Linear" in msg


def test_dropout_only_on_lora_branch_and_only_in_train_mode() -> None:
    model = tiny_mixed()
    inject(model, LoraConfig(r=4, targets=["mlp.0"], dropout=0.5))
    randomize_lora(model)
    x = torch.randn(3, 72)
    layer = model.mlp[0]
    layer.train()
    outs = [layer(x) for _ in range(3)]
    assert not torch.equal(outs[0], outs[1])
    layer.eval()
    assert torch.equal(layer(x), layer(x))
    with torch.no_grad():
        for p in layer.lora_B.parameters():
            p.zero_()
    layer.train()
    # With B zero the dropout-ed branch adds nothing: the base path itself is never dropped.
    assert torch.equal(layer(x), layer.base_layer(x))


def test_wrapper_keeps_base_layer_and_half_base_runs() -> None:
    model = tiny_bert().to(torch.bfloat16)
    inputs = {"input_ids": torch.tensor([[1, 2, 3]])}
    before = logits(model, inputs)
    inject(model, LoraConfig(targets=["query", "value"]))
    q = model.bert.encoder.layer[0].attention.self.query
    assert isinstance(q.base_layer, nn.Linear) and q.base_layer.weight.dtype == torch.bfloat16
    assert q.lora_A["default"].weight.dtype == torch.float32
    out = logits(model, inputs)
    assert out.dtype == torch.bfloat16 and torch.equal(out, before)


def test_inject_follows_eval_mode_so_dropout_is_off() -> None:
    from conftest import text_inputs

    model, inputs = tiny_bert().eval(), text_inputs()
    inject(model, LoraConfig(targets=["query", "value"], dropout=0.5, modules_to_save=["classifier"]))
    randomize_lora(model)
    assert not any(m.training for m in model.modules())
    first = logits(model, inputs)
    assert torch.equal(logits(model, inputs), first)
    model.train()
    assert all(m.training for m in model.modules())
