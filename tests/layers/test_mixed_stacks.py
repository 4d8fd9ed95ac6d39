"""The per-layer adapter stacks of the gather strategy stay exact while adapters come and go."""

from __future__ import annotations

import torch
from torch import nn

from conftest import tiny_llama
from lorakit import (
    LoraConfig,
    add_adapter,
    delete_adapter,
    disable_adapters,
    inject,
    mixed_adapters,
    set_adapter,
)
from lorakit.model import lora_layers

TOL = 1e-5


def _randomize(model: nn.Module, name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if f".{name}." in pname and ".lora_" in pname:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _alone(model: nn.Module, name: str | None, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if name is None:
            with disable_adapters(model):
                return model(input_ids=ids).logits
        set_adapter(model, name)
        return model(input_ids=ids).logits


def _check_rows(model: nn.Module, rows: list[str | None], ids: torch.Tensor, inference: bool) -> None:
    mode = torch.inference_mode() if inference else torch.no_grad()
    with mode, mixed_adapters(model, rows):
        mixed = model(input_ids=ids).logits
    for i, name in enumerate(rows):
        alone = _alone(model, name, ids[i : i + 1])[0]
        assert (mixed[i] - alone).abs().max() <= TOL, (i, name)


def test_rows_stay_exact_as_adapters_leave_arrive_grow_and_change() -> None:
    model = inject(tiny_llama(), LoraConfig(r=2, alpha=4, targets=["q_proj", "v_proj"]), "a")
    add_adapter(model, "b", LoraConfig(r=6, alpha=3, targets=["q_proj", "v_proj"]))
    for i, n in enumerate("ab"):
        _randomize(model, n, i)
    model.eval()
    ids = torch.randint(0, 99, (4, 6), generator=torch.Generator().manual_seed(1))
    _check_rows(model, ["a", "b", None, "a"], ids, inference=True)
    # a leaves; c (a larger rank than any before), d and e arrive; b is changed in place
    delete_adapter(model, "a")
    for i, n in enumerate("cde"):
        add_adapter(model, n, LoraConfig(r=9 if n == "c" else 3, alpha=5, targets=["q_proj", "v_proj"]))
        _randomize(model, n, 10 + i)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B["b"].weight.mul_(-2.0)
    model.eval()
    _check_rows(model, ["c", "b", None, "e"], ids, inference=False)
    _check_rows(model, ["d", "d", "b", "c"], ids, inference=True)


def test_adapters_cycled_through_do_not_grow_the_stacks() -> None:
    model = inject(tiny_llama(), LoraConfig(r=4, alpha=4, targets=["q_proj"]), "keep")
    _randomize(model, "keep", 0)
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(2))
    for i in range(12):
        name = f"n{i}"
        add_adapter(model, name, LoraConfig(r=4, alpha=4, targets=["q_proj"]))
        _randomize(model, name, i + 1)
        model.eval()
        _check_rows(model, ["keep", name], ids, inference=True)
        delete_adapter(model, name)
    for _, layer in lora_layers(model):
        stack = layer.__dict__["_lorakit_mixed_stack"]
        assert stack.a.shape[0] <= 4 and set(stack.slots) <= {"keep", "n11"}
