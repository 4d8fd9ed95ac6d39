"""After real optimizer steps only what the config trains has changed; the rest is bit-identical."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import MODELS, all_tensors, text_inputs, tiny_bert
from lorakit import LoraConfig, inject
from lorakit.model import lora_layers


def expected_trainable(model: nn.Module, bias: str) -> set[str]:
    """The parameter names that must train, derived from the module tree, not from requires_grad."""
    names = {n for n, _ in model.named_parameters() if ".lora_" in n or ".modules_to_save." in n}
    if bias == "all":
        names |= {n for n, _ in model.named_parameters() if n.endswith("bias") and "original_module" not in n}
    if bias == "lora_only":
        for path, layer in lora_layers(model):
            if getattr(layer.base_layer, "bias", None) is not None:
                names.add(f"{path}.base_layer.bias")
    return names


def train_steps(model: nn.Module, inputs: dict, steps: int = 3) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    handed = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not handed & frozen, "a frozen parameter was handed to the optimizer"
    model.train()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        out = model(**inputs)
        out = out if isinstance(out, torch.Tensor) else out.logits
        out.float().pow(2).mean().backward()
        optimizer.step()
    model.eval()
    return optimizer


def check_only_trainable_changed(model: nn.Module, inputs: dict, bias: str) -> None:
    must_train = expected_trainable(model, bias)
    grads = {n for n, p in model.named_parameters() if p.requires_grad}
    assert grads == must_train
    before = all_tensors(model)
    train_steps(model, inputs)
    after = all_tensors(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == must_train
    for key in before.keys() - must_train:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_only_adapter_and_chosen_bias_change(model_name: str, bias: str) -> None:
    build, make_inputs, targets = MODELS[model_name]
    model = build()
    inject(model, LoraConfig(r=4, targets=targets, bias=bias, dropout=0.1))
    has_bias = [n for n in expected_trainable(model, bias) if n.endswith("bias")]
    assert bool(has_bias) == (bias != "none" and model_name != "llama")
    check_only_trainable_changed(model, make_inputs(), bias)


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_modules_to_save_trains_a_copy(bias: str) -> None:
    model = tiny_bert()
    original = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    inject(model, LoraConfig(r=4, targets="all-linear", bias=bias, modules_to_save=["classifier"]))
    assert {n for n, p in model.named_parameters() if p.requires_grad and "classifier" in n} == {
        "classifier.modules_to_save.default.weight",
        "classifier.modules_to_save.default.bias",
    }
    inputs = {**text_inputs(), "labels": torch.tensor([0, 2])}
    check_only_trainable_changed(model, inputs, bias)
    for key, value in model.classifier.original_module.state_dict().items():
        assert torch.equal(value, original[key])
