"""GatedMLP: a Llama-family MLP with one activation fewer kept for backward, bit for bit the same."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

import lorakit
from conftest import randomize_lora, text_inputs, tiny_llama
from lorakit.layers.gated_mlp import GatedMLP, silu_mul


def test_silu_mul_saves_two_tensors_and_matches_the_plain_ops_bit_for_bit() -> None:
    gate = torch.randn(64, 48, requires_grad=True)
    up = torch.randn(64, 48, requires_grad=True)
    g = torch.randn(64, 48)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = silu_mul(gate, up)
    assert len(saved) == 2 and saved[0] is gate and saved[1] is up
    got = torch.autograd.grad(out, (gate, up), g)
    plain = F.silu(gate) * up
    ref = torch.autograd.grad(plain, (gate, up), g)
    assert torch.equal(out, plain)
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)


def _step(model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    inputs = text_inputs(batch=2, length=9)
    out = model(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    return out.logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_wrapped_lora_model_gives_identical_values_and_gradients() -> None:
    model = lorakit.inject(tiny_llama(), lorakit.LoraConfig(r=4, targets="all-linear"))
    randomize_lora(model)
    model.train()
    ref_keys = list(model.state_dict())
    ref = _step(copy.deepcopy(model))
    names = lorakit.wrap_gated_mlps(model)
    assert names == ["model.layers.0.mlp", "model.layers.1.mlp"]
    assert all(isinstance(model.get_submodule(n), GatedMLP) for n in names)
    assert list(model.state_dict()) == ref_keys  # parameter names (checkpoints, adapter files) stay
    assert lorakit.wrap_gated_mlps(model) == []  # idempotent
    got = _step(model)
    assert torch.equal(got[0], ref[0])
    assert got[1].keys() == ref[1].keys() and any("mlp.up_proj.lora_B" in k for k in got[1])
    for k, grad in got[1].items():
        assert torch.equal(grad, ref[1][k]), k
    assert lorakit.unwrap_gated_mlps(model) == names
    assert list(model.state_dict()) == ref_keys


class _SwappedMLP(nn.Module):
    """Looks like a Llama MLP, computes something else: the numeric check must refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(8, 16), nn.Linear(8, 16)
        self.down_proj, self.act_fn = nn.Linear(16, 8), nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)) * self.gate_proj(x))


def test_only_mlps_it_reproduces_are_wrapped() -> None:
    holder = nn.ModuleDict({"swapped": _SwappedMLP(), "gelu": _SwappedMLP()})
    holder["gelu"].act_fn = nn.GELU()
    assert lorakit.wrap_gated_mlps(holder) == []
    assert not any(isinstance(m, GatedMLP) for m in holder.modules())


def test_unwrap_keeps_projections_swapped_while_wrapped() -> None:
    model = tiny_llama()
    model.requires_grad_(False)
    lorakit.wrap_gated_mlps(model)
    lorakit.wrap_frozen_layers(model)  # replaces the projections inside the GatedMLP
    lorakit.unwrap_gated_mlps(model)
    mlp = model.model.layers[0].mlp
    assert type(mlp).__name__ == "LlamaMLP" and type(mlp.gate_proj).__name__ == "FrozenLinear"
    assert sorted(lorakit.unwrap_frozen_layers(model))[0] == "lm_head"
    assert type(mlp.gate_proj) is nn.Linear
