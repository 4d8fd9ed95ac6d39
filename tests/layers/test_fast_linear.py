"""The fused LoRA linear computes exactly the straightforward formula, values and gradients.

Every test runs once per matmul backend: torch's own GEMM and oneDNN forced on for every size."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import lorakit
from conftest import randomize_lora, text_inputs, tiny_bert, tiny_gpt2
from lorakit.layers import LoraLinear, gemm
from lorakit.layers.fast_linear import can_fuse

TOL = {"atol": 1e-5, "rtol": 1e-5}
SCALING = 2.0
BACKENDS = [gemm.MatmulBackend.TORCH]
if gemm.onednn_available():
    BACKENDS.append(gemm.MatmulBackend.ONEDNN)


@pytest.fixture(autouse=True, params=BACKENDS, ids=lambda b: b.value)
def backend(request: pytest.FixtureRequest):
    with gemm.matmul_backend(request.param):
        yield request.param


class Conv1D(nn.Module):
    """Stand-in for transformers' GPT-2 Conv1D: weight stored as (in, out)."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], self.nf)


def make_layer(
    *, bias: bool = True, conv1d: bool = False, dropout: float = 0.0, dtype: torch.dtype = torch.float32
) -> LoraLinear:
    torch.manual_seed(0)
    base = Conv1D(6, 5) if conv1d else nn.Linear(5, 6, bias=bias)
    if conv1d and not bias:
        base.bias = None
    layer = LoraLinear(base.to(dtype))
    layer.add_adapter("a", r=3, scaling=SCALING, dropout=dropout, init="kaiming")
    layer.active_adapters = ["a"]
    layer.requires_grad_(False)
    for p in (layer.lora_A["a"].weight, layer.lora_B["a"].weight):
        p.requires_grad_(True)
    with torch.no_grad():
        layer.lora_B["a"].weight.normal_()
    return layer


def reference(layer: LoraLinear, x: torch.Tensor) -> torch.Tensor:
    """The textbook formula, written out independently of LoraLinear.forward."""
    base = layer.base_layer
    w = base.weight.T if layer.fan_in_fan_out else base.weight  # (out, in)
    out = x @ w.T
    if base.bias is not None:
        out = out + base.bias
    a, b = layer.lora_A["a"].weight, layer.lora_B["a"].weight
    h = layer.lora_dropout["a"](x.to(a.dtype))
    return out + ((h @ a.T) @ b.T * SCALING).to(out.dtype)


def grads_of(layer: LoraLinear, x: torch.Tensor, fn, seed: int = 7) -> dict[str, torch.Tensor]:
    x = x.detach().clone().requires_grad_(x.requires_grad)
    torch.manual_seed(seed)  # the same dropout mask for both computations
    out = fn(layer, x)
    weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape).to(out.dtype)
    (out * weights).float().sum().backward()
    res = {"out": out.detach().float()}
    for name, p in layer.named_parameters():
        if p.grad is not None:
            res[name] = p.grad.detach().float().clone()
            p.grad = None
    if x.grad is not None:
        res["x"] = x.grad.detach().float()
    return res


CASES = {
    "bias": {},
    "no-bias": {"bias": False},
    "conv1d": {"conv1d": True},
    "conv1d-no-bias": {"conv1d": True, "bias": False},
    "dropout": {"dropout": 0.3},
    "conv1d-dropout": {"conv1d": True, "dropout": 0.5},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("input_grad", [True, False], ids=["x-grad", "x-frozen"])
def test_matches_reference(case: str, shape: tuple[int, ...], input_grad: bool) -> None:
    layer = make_layer(**CASES[case])
    layer.train()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3), requires_grad=input_grad)
    assert can_fuse(layer.base_layer, x)
    fast = grads_of(layer, x, lambda m, t: m(t))
    ref = grads_of(layer, x, reference)
    assert set(fast) == set(ref)
    assert {"lora_A.a.weight", "lora_B.a.weight"} <= set(fast)
    assert ("x" in fast) == input_grad
    for key in ref:
        torch.testing.assert_close(fast[key], ref[key], **TOL, msg=key)


def test_dropout_really_applies() -> None:
    """With p > 0 the adapter sees a masked input: a different seed gives different gradients."""
    layer = make_layer(dropout=0.5)
    layer.train()
    x = torch.randn(4, 5)
    one = grads_of(layer, x, lambda m, t: m(t), seed=1)
    two = grads_of(layer, x, lambda m, t: m(t), seed=2)
    assert not torch.allclose(one["lora_A.a.weight"], two["lora_A.a.weight"])


@pytest.mark.parametrize("bias", [True, False])
def test_bf16_base_float32_adapter(bias: bool) -> None:
    layer = make_layer(bias=bias, dtype=torch.bfloat16)
    assert layer.lora_A["a"].weight.dtype == torch.float32
    x = torch.randn(2, 3, 5).to(torch.bfloat16).requires_grad_(True)
    fast = grads_of(layer, x, lambda m, t: m(t))
    ref = grads_of(layer, x, reference)
    assert set(fast) == set(ref)
    for key in ("lora_A.a.weight", "lora_B.a.weight"):
        torch.testing.assert_close(fast[key], ref[key], **TOL, msg=key)
    for key in ("out", "x"):  # bf16 values: equal up to one rounding of the final add
        torch.testing.assert_close(fast[key], ref[key], atol=1e-2, rtol=1e-2, msg=key)


@pytest.mark.parametrize("bias", [True, False])
def test_trainable_base_weight_and_bias(bias: bool) -> None:
    """When the base does require grad (bias="lora_only", unfrozen weight) its gradients are right."""
    layer = make_layer(bias=bias)
    layer.base_layer.requires_grad_(True)
    x = torch.randn(2, 3, 5, requires_grad=True)
    fast = grads_of(layer, x, lambda m, t: m(t))
    ref = grads_of(layer, x, reference)
    assert "base_layer.weight" in fast and ("base_layer.bias" in fast) == bias
    for key in ref:
        torch.testing.assert_close(fast[key], ref[key], **TOL, msg=key)


def _with_fast_path(model: nn.Module, on: bool) -> nn.Module:
    for m in model.modules():
        if isinstance(m, LoraLinear):
            m.fast_path = on
    return model


@pytest.mark.parametrize("build,targets", [(tiny_bert, "all-linear"), (tiny_gpt2, ["c_attn", "c_proj"])])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_model_step_same_with_fast_path_on_and_off(build, targets, dropout: float) -> None:
    model = lorakit.inject(build(), lorakit.LoraConfig(r=4, targets=targets, dropout=dropout))
    randomize_lora(model)
    model.train()
    inputs = text_inputs(batch=3, length=9)
    results = []
    for on in (True, False):
        net = _with_fast_path(copy.deepcopy(model), on)
        torch.manual_seed(5)
        out = net(**inputs).logits
        out.float().pow(2).mean().backward()
        grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
        results.append((out.detach(), grads))
    (out_on, g_on), (out_off, g_off) = results
    torch.testing.assert_close(out_on, out_off, **TOL)
    assert g_on.keys() == g_off.keys() and any(".lora_A." in n for n in g_on)
    for name in g_on:
        torch.testing.assert_close(g_on[name], g_off[name], **TOL, msg=name)


def test_merge_unmerge_disable_and_multi_adapter_with_fast_path() -> None:
    model = lorakit.inject(tiny_bert(), lorakit.LoraConfig(r=4, targets=["query", "value"]))
    lorakit.add_adapter(model, "other", lorakit.LoraConfig(r=2, targets=["query", "dense"]))
    randomize_lora(model)
    inputs = text_inputs()
    plain = _with_fast_path(copy.deepcopy(model), False)

    def logits(net: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            return net(**inputs).logits

    base = logits(lorakit.unload(copy.deepcopy(model)))
    for name in ("default", "other"):
        lorakit.set_adapter(model, name)
        lorakit.set_adapter(plain, name)
        adapted = logits(model)
        torch.testing.assert_close(adapted, logits(plain), **TOL)
        assert not torch.allclose(adapted, base)
        lorakit.merge(model)
        torch.testing.assert_close(logits(model), adapted, atol=1e-5, rtol=1e-4)
        lorakit.unmerge(model)
        torch.testing.assert_close(logits(model), adapted, **TOL)
        with lorakit.disable_adapters(model):
            torch.testing.assert_close(logits(model), base, **TOL)
    # Two adapters active at once take the plain path and still agree.
    for net in (model, plain):
        for m in net.modules():
            if isinstance(m, LoraLinear):
                m.active_adapters = m.adapter_names()
    torch.testing.assert_close(logits(model), logits(plain), **TOL)


def test_hooks_and_autocast_fall_back_to_plain_path() -> None:
    layer = make_layer()
    x = torch.randn(2, 5)
    assert can_fuse(layer.base_layer, x)
    calls = []
    handle = layer.base_layer.register_forward_hook(lambda *a: calls.append(1))
    layer(x)
    assert calls == [1] and not can_fuse(layer.base_layer, x)
    handle.remove()
    assert not can_fuse(layer.base_layer, x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not can_fuse(layer.base_layer, x)


def test_no_state_kept_between_calls() -> None:
    """Changing A between two calls changes the second result: nothing is cached."""
    layer = make_layer()
    x = torch.randn(3, 5)
    first = layer(x).detach()
    with torch.no_grad():
        layer.lora_A["a"].weight.mul_(2)
    second = layer(x).detach()
    torch.testing.assert_close(second, reference(layer, x).detach(), **TOL)
    assert not torch.allclose(first, second)


@pytest.mark.parametrize("case", ["bias", "conv1d-no-bias"])
def test_inference_path_matches_reference(case: str) -> None:
    layer = make_layer(**CASES[case]).eval()
    x = torch.randn(2, 3, 5)
    with torch.no_grad():
        fast = layer(x)
    torch.testing.assert_close(fast, reference(layer, x).detach(), **TOL)
    with torch.inference_mode():
        torch.testing.assert_close(layer(x), fast, **TOL)
