"""FrozenLinear: a frozen unadapted layer on lorakit's GEMM path computes what nn.Linear computes.

Bit for bit on torch's GEMM, within 1e-5 on oneDNN; wrapping a model is explicit and reversible."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import lorakit
from conftest import randomize_lora, text_inputs, tiny_gpt2, tiny_llama
from lorakit.layers import gemm
from lorakit.layers.frozen import FrozenLinear

Backend = gemm.MatmulBackend
BACKENDS = [Backend.TORCH] + ([Backend.ONEDNN] if gemm.onednn_available() else [])


def _linear(bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(24, 40, bias=bias)
    layer.requires_grad_(False)
    return layer


def _value_and_input_grad(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = layer(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_same_value_and_input_gradient_as_linear(backend: Backend, bias: bool) -> None:
    base = _linear(bias)
    x = torch.randn(3, 50, 24)
    ref = _value_and_input_grad(base, x)
    with gemm.matmul_backend(backend):
        got = _value_and_input_grad(FrozenLinear(base), x)
    for a, b in zip(got, ref, strict=True):
        if backend is Backend.TORCH:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert base.weight.grad is None


def test_saves_only_the_weight_never_the_input() -> None:
    layer = FrozenLinear(_linear())
    x = torch.randn(64, 24, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        layer(x).sum().backward()
    assert len(saved) == 1 and saved[0] is layer.weight


def test_trainable_bias_gets_its_gradient() -> None:
    base = _linear()
    base.bias.requires_grad_(True)
    x = torch.randn(5, 24, requires_grad=True)
    FrozenLinear(base)(x).pow(2).sum().backward()
    got = base.bias.grad.clone()
    base.bias.grad = None
    base(x).pow(2).sum().backward()
    assert torch.equal(got, base.bias.grad)


def test_falls_back_to_the_base_layer_when_the_weight_trains_or_hooks_run() -> None:
    base = _linear()
    base.weight.requires_grad_(True)
    x = torch.randn(5, 24)
    FrozenLinear(base)(x).sum().backward()
    assert base.weight.grad is not None  # nn.Linear's own backward ran
    base.requires_grad_(False)
    seen = []
    base.register_forward_hook(lambda *args: seen.append(1))
    FrozenLinear(base)(x)
    assert seen == [1]


def test_no_grad_and_autocast() -> None:
    base = _linear()
    layer = FrozenLinear(base)
    x = torch.randn(4, 24)
    with torch.no_grad():
        assert torch.equal(layer(x), base(x)) and not layer(x).requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # autocast's own nn.Linear path


def _train_grads(model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    inputs = text_inputs(batch=3, length=9)
    out = model(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    grads = {
        n.replace(".base_layer.", "."): p.grad for n, p in model.named_parameters() if p.grad is not None
    }
    return out.logits.detach(), grads


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2-tied-head"])
def test_wrapping_a_lora_model_changes_nothing_but_the_module_tree(make) -> None:
    targets = ["q_proj", "v_proj"] if make is tiny_llama else ["c_attn"]
    model = lorakit.inject(make(), lorakit.LoraConfig(r=4, targets=targets))
    randomize_lora(model)
    model.train()
    for m in model.modules():  # GPT-2's dropout would draw differently in the two runs
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    ref_keys = list(model.state_dict())
    ref_logits, ref_grads = _train_grads(copy.deepcopy(model))
    names = lorakit.wrap_frozen_layers(model)
    assert "lm_head" in names
    assert not any(t in n for n in names for t in targets)  # adapted layers stay LoRA layers
    assert all(isinstance(model.get_submodule(n), FrozenLinear) for n in names)
    with gemm.matmul_backend(Backend.TORCH):
        logits, grads = _train_grads(model)
    assert torch.equal(logits, ref_logits)
    assert grads.keys() == ref_grads.keys() and any("lora_B" in k for k in grads)
    for k, g in grads.items():
        assert torch.equal(g, ref_grads[k]), k
    assert lorakit.wrap_frozen_layers(model) == []  # idempotent
    assert sorted(lorakit.unwrap_frozen_layers(model)) == sorted(names)
    assert not any(isinstance(m, FrozenLinear) for m in model.modules())
    assert list(model.state_dict()) == ref_keys


def test_trainable_layers_are_not_wrapped() -> None:
    model = tiny_llama()
    model.requires_grad_(False)
    model.model.layers[0].mlp.down_proj.bias = nn.Parameter(torch.zeros(32))  # a trained bias
    names = lorakit.wrap_frozen_layers(model)
    assert "model.layers.0.mlp.down_proj" not in names and "model.layers.1.mlp.down_proj" in names
    full = tiny_llama()  # everything trains: nothing to wrap
    assert lorakit.wrap_frozen_layers(full) == []


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2-tied-head"])
def test_wrap_output_head_wraps_the_head_alone_and_adapters_still_load(make, tmp_path) -> None:
    from lorakit.fast_modules import wrap_output_head

    targets = ["q_proj", "v_proj"] if make is tiny_llama else ["c_attn"]
    source = lorakit.inject(make(), lorakit.LoraConfig(r=4, targets=targets))
    randomize_lora(source)
    path = lorakit.save_adapter(source, tmp_path / "adapter")
    model = make().eval()
    model.requires_grad_(False)
    tied = model.get_output_embeddings().weight
    assert wrap_output_head(model) == ["lm_head"]
    head = model.get_output_embeddings()
    assert isinstance(head, FrozenLinear) and head.weight is tied  # a tied head stays tied
    assert sum(isinstance(m, FrozenLinear) for m in model.modules()) == 1
    lorakit.load_adapter(model, path)  # the loader's targeting and fingerprint are unaffected
    ids = torch.randint(0, 50, (3, 7))
    source.eval()
    with torch.no_grad(), gemm.matmul_backend(Backend.TORCH):
        assert torch.equal(model(input_ids=ids).logits, source(input_ids=ids).logits)
    with torch.no_grad(), gemm.matmul_backend(Backend.ONEDNN):
        fast, plain = model(input_ids=ids).logits, source(input_ids=ids).logits
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    assert wrap_output_head(model) == []  # idempotent
