"""Packed frozen weights (layers/packed.py): same products as nn.Linear, never stale, never under
autograd, off under MatmulBackend.TORCH, and a clean fallback when the private operator fails."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
from torch import nn

import lorakit
from conftest import tiny_llama
from lorakit.fast_modules import prepare_for_serving
from lorakit.layers import LoraLinear, gemm, packed
from lorakit.layers.frozen import FrozenLinear

needs_onednn = pytest.mark.skipif(not gemm.onednn_available(), reason="no oneDNN in this torch build")


@pytest.fixture
def fresh_probe():
    packed.reset_reorder_probe()
    yield
    packed.reset_reorder_probe()


def _big_linear(out_f: int = 512, in_f: int = 384, bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_f, out_f, bias=bias).requires_grad_(False)


def _wrapper(layer: nn.Linear) -> LoraLinear:
    wrapper = LoraLinear(layer)
    wrapper.packed_base = True
    return wrapper


@needs_onednn
@pytest.mark.parametrize("rows", [1, 2, 16, 300])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_product_matches_nn_linear(rows: int, bias: bool) -> None:
    layer = _big_linear(bias=bias)
    wrapper = _wrapper(layer)
    x = torch.randn(rows, 384)
    with torch.inference_mode():
        assert packed.packs(layer, x)
        got = wrapper(x)
        expected = layer(x)
    assert wrapper._packed.nbytes >= layer.weight.numel() * 4  # the packed copy was made
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_three_dimensional_input_and_frozen_linear() -> None:
    layer = _big_linear()
    frozen = FrozenLinear(layer)
    frozen.packed = True
    x = torch.randn(4, 16, 384)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), layer(x), rtol=1e-5, atol=1e-5)
    assert frozen._packed.nbytes > 0
    assert "packed=True" in repr(frozen)


@needs_onednn
def test_a_weight_changed_in_place_is_repacked() -> None:
    """A merge writes the base weight in place: the next product must use the new weight."""
    layer = _big_linear()
    wrapper = _wrapper(layer)
    x = torch.randn(32, 384)
    with torch.inference_mode():
        wrapper(x)
    with torch.no_grad():
        layer.weight.mul_(-2.0)
    with torch.inference_mode():
        torch.testing.assert_close(wrapper(x), layer(x), rtol=1e-5, atol=1e-5)


def test_not_used_while_a_gradient_is_recorded() -> None:
    layer = _big_linear()
    wrapper = _wrapper(layer)
    x = torch.randn(32, 384, requires_grad=True)
    assert not packed.packs(layer, x)
    wrapper(x).sum().backward()
    assert wrapper._packed.nbytes == 0
    assert x.grad is not None


@pytest.mark.parametrize("rows", [1, 300])
def test_small_weights_stay_on_torch_and_are_bit_identical(rows: int) -> None:
    layer = _big_linear(out_f=64, in_f=64)
    wrapper = _wrapper(layer)
    x = torch.randn(rows, 64)
    with torch.inference_mode():
        assert not packed.packs(layer, x)
        assert torch.equal(wrapper(x), layer(x))
    assert wrapper._packed.nbytes == 0


def test_torch_backend_is_bit_identical_to_nn_linear() -> None:
    layer = _big_linear()
    wrapper = _wrapper(layer)
    x = torch.randn(64, 384)
    with torch.inference_mode(), gemm.matmul_backend(gemm.MatmulBackend.TORCH):
        assert torch.equal(wrapper(x), layer(x))
    assert wrapper._packed.nbytes == 0


@pytest.mark.parametrize("broken", ["raises", "wrong"])
def test_a_failing_reorder_operator_falls_back_with_one_warning(
    fresh_probe, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    def reorder(w: torch.Tensor, hint: int) -> torch.Tensor:
        if broken == "raises":
            raise RuntimeError("no such kernel")
        return w * 2

    class FakeOps:
        _reorder_linear_weight = type("Op", (), {"default": staticmethod(reorder)})

    monkeypatch.setattr(torch.ops, "mkldnn", FakeOps, raising=False)
    monkeypatch.setattr(gemm, "onednn_linear_op", lambda: lambda a, w, b, *_: torch.addmm(b, a, w.t()))
    layer = _big_linear()
    wrapper = _wrapper(layer)
    x = torch.randn(64, 384)
    with pytest.warns(RuntimeWarning, match="packed weights are off"), torch.inference_mode():
        assert torch.equal(wrapper(x), layer(x))
    with torch.inference_mode():  # the verdict is kept: no second warning, still torch
        assert torch.equal(wrapper(x), layer(x))


@needs_onednn
def test_real_reorder_operator_passes_the_probe() -> None:
    op = torch.ops.mkldnn._reorder_linear_weight.default
    assert packed.probe_reorder(op, gemm.onednn_linear_op()) is None


@needs_onednn
def test_copies_and_pickles_of_a_packed_model_pack_their_own_weights() -> None:
    layer = _big_linear()
    wrapper = _wrapper(layer)
    x = torch.randn(64, 384)
    with torch.inference_mode():
        wrapper(x)
    clone = copy.deepcopy(wrapper)
    again = pickle.loads(pickle.dumps(wrapper))
    assert clone._packed.nbytes == 0 and again._packed.nbytes == 0
    with torch.no_grad():
        clone.base_layer.weight.add_(1.0)
        torch.testing.assert_close(clone(x), clone.base_layer(x), rtol=1e-5, atol=1e-4)  # outputs ~20
        torch.testing.assert_close(again(x), layer(x), rtol=1e-5, atol=1e-5)


def test_prepare_for_serving_wraps_every_linear_but_the_head_and_keeps_logits() -> None:
    """Empty wrappers compute the base: logits equal (tiny products stay on torch's GEMM), and an
    adapter loaded afterwards attaches to the existing wrappers, giving the unprepared result."""
    model = tiny_llama()
    reference = copy.deepcopy(model).eval()
    names = prepare_for_serving(model.eval())
    linears = [n for n, m in reference.named_modules() if type(m) is nn.Linear]
    assert sorted(names) == sorted(linears)  # the head as a FrozenLinear, the rest as LoRA wrappers
    assert not any(p.requires_grad for p in model.parameters())
    ids = torch.tensor([[1, 5, 7, 2, 9]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    wrappers = {n: id(m) for n, m in model.named_modules() if isinstance(m, LoraLinear)}
    assert all(m.packed_base for m in model.modules() if isinstance(m, LoraLinear))
    # tiny weights are never packed (MIN_WEIGHT): nothing is held for them
    assert all(m._packed.nbytes == 0 for m in model.modules() if isinstance(m, (LoraLinear, FrozenLinear)))
    cfg = lorakit.LoraConfig(r=4, alpha=8, targets=["q_proj", "v_proj"])
    lorakit.inject(reference, cfg)
    with torch.no_grad():
        for p in reference.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    reference.eval()
    lorakit.add_adapter(model, "default", cfg)
    lorakit.set_adapter(model, "default")
    model.load_state_dict(reference.state_dict(), strict=False)
    assert {n: id(m) for n, m in model.named_modules() if isinstance(m, LoraLinear)} == wrappers
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_an_all_linear_adapter_loads_onto_a_prepared_model(tmp_path) -> None:
    """PEFT's all-linear expansion must not count the head inside its FrozenLinear as a target."""
    trained = lorakit.inject(tiny_llama(), lorakit.LoraConfig(r=4, alpha=8, targets="all-linear"))
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    lorakit.save_adapter(trained.eval(), tmp_path / "ad")
    config = tmp_path / "ad" / "adapter_config.json"  # as a hand-written PEFT config says it
    data = json.loads(config.read_text())
    data["target_modules"] = "all-linear"
    config.write_text(json.dumps(data))
    assert json.loads(config.read_text())["target_modules"] == "all-linear"
    served = tiny_llama()
    prepare_for_serving(served)
    lorakit.load_adapter(served, tmp_path / "ad")
    ids = torch.tensor([[1, 5, 7, 2, 9]])
    with torch.no_grad():
        torch.testing.assert_close(served(input_ids=ids).logits, trained(input_ids=ids).logits)


@needs_onednn
def test_prepare_for_serving_packs_large_weights_at_once() -> None:
    """Packed copies are made by prepare_for_serving, not at the first request (a server's memory
    is fixed from start-up), for every weight that will ever be multiplied packed."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(384, 512), nn.ReLU(), nn.Linear(512, 384), nn.Linear(384, 8))
    x = torch.randn(3, 384)
    with torch.no_grad():
        expected = model(x)
    prepare_for_serving(model)
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    assert len(layers) == 3
    assert [m._packed.nbytes > 0 for m in layers] == [True, True, False]  # 384 x 8 is below MIN_WEIGHT
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
