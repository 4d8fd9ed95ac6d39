"""The matmul backends of the fused path: which one runs, and that each is a float32 GEMM.

oneDNN and torch (MKL) differ only in summation order, so on realistic sizes (where AUTO picks
oneDNN) values and gradients of a LoRA layer must match a float64 reference as closely as torch's.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import lorakit
from conftest import randomize_lora, text_inputs
from lorakit.layers import LoraLinear, gemm

needs_onednn = pytest.mark.skipif(not gemm.onednn_available(), reason="torch built without oneDNN")
Backend = gemm.MatmulBackend


def test_setting_is_typed_and_restored() -> None:
    assert gemm.get_matmul_backend() is Backend.AUTO
    with lorakit.matmul_backend(Backend.TORCH):
        assert lorakit.get_matmul_backend() is Backend.TORCH
        with pytest.raises(TypeError, match="MatmulBackend"):
            lorakit.set_matmul_backend("onednn")  # type: ignore[arg-type]
        assert lorakit.get_matmul_backend() is Backend.TORCH
    assert gemm.get_matmul_backend() is Backend.AUTO
    with pytest.raises(RuntimeError), lorakit.matmul_backend(Backend.ONEDNN):
        raise RuntimeError("restored even on error")
    assert gemm.get_matmul_backend() is Backend.AUTO


@needs_onednn
def test_auto_picks_onednn_only_for_large_float32_cpu_products() -> None:
    big, w = torch.randn(256, 384), torch.randn(384, 384)
    small = torch.randn(2, 8)
    assert gemm.uses_onednn(big, w)
    assert not gemm.uses_onednn(small, torch.randn(8, 8))
    assert not gemm.uses_onednn(big.double(), w.double())
    assert not gemm.uses_onednn(big.bfloat16(), w.bfloat16())
    assert not gemm.uses_onednn(torch.randn(0, 384), w)
    with gemm.matmul_backend(Backend.TORCH):
        assert not gemm.uses_onednn(big, w)
    with gemm.matmul_backend(Backend.ONEDNN):
        assert gemm.uses_onednn(small, torch.randn(8, 8))
    with torch.backends.mkldnn.flags(enabled=False):
        assert not gemm.uses_onednn(big, w)


@pytest.mark.parametrize("backend", [Backend.TORCH, Backend.ONEDNN], ids=lambda b: b.value)
@pytest.mark.parametrize(
    "layout", ["contiguous", "transposed-a", "transposed-w", "expanded-a", "stepped", "storage-offset"]
)
def test_products_match_float64(backend: Backend, layout: str) -> None:
    if backend is Backend.ONEDNN and not gemm.onednn_available():
        pytest.skip("torch built without oneDNN")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 96, generator=g)
    w = torch.randn(128, 96, generator=g) / 96**0.5
    bias = torch.randn(128, generator=g)
    if layout == "transposed-a":
        a = a.t().contiguous().t()
    if layout == "transposed-w":
        w = w.t().contiguous().t()
    if layout == "expanded-a":
        a = a[:1].expand(300, 96)
    if layout == "stepped":
        a = torch.cat([a, a]).reshape(300, 192)[:, ::2]
        w = torch.cat([w, w], 1)[:, ::2]
    if layout == "storage-offset":
        block = torch.randn(500, 200, generator=g)
        block[3:303, 7:103] = a
        block[310:438, 50:146] = w
        a, w = block[3:303, 7:103], block[310:438, 50:146]
    ref = a.double() @ w.double().t()
    with gemm.matmul_backend(backend):
        out = gemm.linear(a, w, bias)
        prod = gemm.mm(a, w.t())
        empty = gemm.linear(torch.randn(0, 96), w)
    assert out.dtype == torch.float32 and out.shape == (300, 128) and empty.shape == (0, 128)
    torch.testing.assert_close(out.double(), ref + bias.double(), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(prod.double(), ref, atol=2e-5, rtol=1e-5)


def _bert(hidden: int = 128) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=99,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(cfg)


def _bert_step(backend: Backend, model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    net = copy.deepcopy(model)
    with gemm.matmul_backend(backend):
        out = net(**text_inputs(batch=16, length=24)).logits
        out.pow(2).mean().backward()
    return out.detach(), {n: p.grad for n, p in net.named_parameters() if p.requires_grad}


@needs_onednn
def test_training_step_same_on_every_backend() -> None:
    """A realistic-width layer stack (AUTO takes oneDNN here) gives torch's values and gradients."""
    model = lorakit.inject(_bert(), lorakit.LoraConfig(r=8, targets="all-linear"))
    randomize_lora(model)
    model.train()
    ref_out, ref_grads = _bert_step(Backend.TORCH, model)
    for backend in (Backend.AUTO, Backend.ONEDNN):
        out, grads = _bert_step(backend, model)
        torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
        assert grads.keys() == ref_grads.keys() and any(".lora_B." in n for n in grads)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_fresh_adapter_bit_identical_to_base_on_torch_backend() -> None:
    """With TORCH, B = 0 makes the fused output equal the base layer's to the last bit."""
    torch.manual_seed(0)
    base = nn.Linear(384, 384)
    layer = LoraLinear(copy.deepcopy(base))
    layer.add_adapter("a", r=8, scaling=2.0, dropout=0.0, init="kaiming")
    layer.active_adapters = ["a"]
    x = torch.randn(4, 64, 384)
    with gemm.matmul_backend(Backend.TORCH):
        assert torch.equal(layer(x), base(x))
    with gemm.matmul_backend(Backend.AUTO):
        torch.testing.assert_close(layer(x), base(x), atol=1e-5, rtol=1e-5)


def _minilm() -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    from lorakit.model_sources import resolve_model

    try:
        ref = resolve_model("minilm-l6")
    except lorakit.LorakitError as err:
        pytest.skip(str(err))
    torch.manual_seed(0)
    net = AutoModelForSequenceClassification.from_pretrained(ref.path, num_labels=2, **ref.kwargs())
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return net.train()


def _same_adapter_values(net: nn.Module) -> None:
    """The same A and B in lorakit and PEFT models: seeded by the module path, not by call order."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_" in name:
                key = name.removeprefix("base_model.model.").replace(".default", "")
                seed = sum(key.encode()) * 7919 + len(key)
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.05)


def _minilm_step(net: nn.Module, backend: Backend) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, net.config.vocab_size, (8, 64), generator=g)
    with gemm.matmul_backend(backend):
        out = net(input_ids=ids, labels=torch.tensor([0, 1] * 4))
        out.loss.backward()
    grads = {
        n.removeprefix("base_model.model.").replace(".default", ""): p.grad
        for n, p in net.named_parameters()
        if "lora_" in n
    }
    return out.logits.detach(), grads


@needs_onednn
@pytest.mark.parametrize("targets", [["query", "value"], "all-linear"], ids=["query+value", "all-linear"])
def test_real_minilm_on_onednn_matches_peft(targets) -> None:
    """MiniLM-L6 at a training shape (8 x 64 tokens, so AUTO takes oneDNN): lorakit's logits and
    A/B gradients equal PEFT's (the oracle, on torch's GEMM) within 1e-5."""
    peft = pytest.importorskip("peft")
    base = _minilm()
    ours = lorakit.inject(copy.deepcopy(base), lorakit.LoraConfig(r=8, alpha=16, targets=targets))
    names = [t.name for t in lorakit.find_targets(base, lorakit.LoraConfig(r=8, targets=targets))]
    theirs = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=16, target_modules=names)
    )
    for net in (ours, theirs):
        _same_adapter_values(net)
    _, torch_grads = _minilm_step(copy.deepcopy(ours), Backend.TORCH)
    ours_logits, ours_grads = _minilm_step(ours, Backend.AUTO)
    ref_logits, ref_grads = _minilm_step(theirs, Backend.AUTO)
    # oneDNN really ran: its summation order differs from MKL's somewhere in ~10^5 gradient values.
    assert any(not torch.equal(g, torch_grads[n]) for n, g in ours_grads.items())
    torch.testing.assert_close(ours_logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert ours_grads.keys() == ref_grads.keys() and len(ours_grads) == 2 * len(names)
    for name, grad in ours_grads.items():
        ref = ref_grads[name]
        torch.testing.assert_close(grad, ref, atol=1e-5, rtol=1e-5, msg=name)
        # Also relative to the tensor's scale: a 1e-4 relative error anywhere fails (measured: <1e-5).
        torch.testing.assert_close(grad, ref, atol=5e-5 * float(ref.abs().max()), rtol=0, msg=name)
