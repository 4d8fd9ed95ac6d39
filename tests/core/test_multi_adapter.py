"""Several adapters on one model: add, set, delete, names, and which one trains."""

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
    text_inputs,
    tiny_bert,
    tiny_llama,
)
from lorakit import (
    ConfigError,
    LoraConfig,
    LorakitError,
    add_adapter,
    delete_adapter,
    disable_adapters,
    inject,
    merge,
    set_adapter,
    unmerge,
)
from lorakit.model import lora_layers


def randomize_adapter(model: nn.Module, name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if ".lora_" in pname and pname.split(".")[-2 if pname.endswith("weight") else -1] == name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def two_adapters() -> tuple[nn.Module, dict, torch.Tensor]:
    model, inputs = tiny_llama(), text_inputs()
    base = logits(model, inputs)
    inject(model, LoraConfig(r=4, targets=["q_proj", "v_proj"]))
    add_adapter(model, "other", LoraConfig(r=2, targets=["o_proj"], modules_to_save=["lm_head"]))
    randomize_adapter(model, "default", 1)
    randomize_adapter(model, "other", 2)
    return model, inputs, base


def trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_outputs_switch_with_the_active_adapter() -> None:
    model, inputs, base = two_adapters()
    out_default = logits(model, inputs)
    set_adapter(model, "other")
    out_other = logits(model, inputs)
    assert not torch.allclose(out_default, out_other)
    assert not torch.allclose(out_other, base)
    set_adapter(model, "default")
    assert torch.equal(logits(model, inputs), out_default)
    with disable_adapters(model):
        assert torch.equal(logits(model, inputs), base)


def test_added_adapter_is_inactive_until_set() -> None:
    model, inputs = tiny_llama(), text_inputs()
    inject(model, LoraConfig(targets=["q_proj"]))
    randomize_lora(model)
    out = logits(model, inputs)
    grads = trainable(model)
    add_adapter(model, "second", LoraConfig(targets=["q_proj", "k_proj"]))
    randomize_adapter(model, "second", 3)
    assert torch.equal(logits(model, inputs), out)
    assert trainable(model) == grads


def test_only_the_active_adapter_trains() -> None:
    model, inputs, _ = two_adapters()
    for active, other in (("default", "other"), ("other", "default")):
        set_adapter(model, active)
        names = trainable(model)
        assert names and all(f".{active}" in n for n in names)
        assert not any(f".{other}" in n for n in names)
        model.zero_grad(set_to_none=True)
        logits_out = model(**inputs).logits
        logits_out.float().pow(2).mean().backward()
        for n, p in model.named_parameters():
            assert (p.grad is not None) == (n in names), n
    # modules_to_save copy of "other" trains only while "other" is active.
    set_adapter(model, "other")
    assert {n for n in trainable(model) if "modules_to_save" in n} == {"lm_head.modules_to_save.other.weight"}


def test_delete_adapter() -> None:
    model, inputs, base = two_adapters()
    classes = module_classes(tiny_llama())
    before = base_tensors(model)
    set_adapter(model, "other")
    delete_adapter(model, "other")  # the active one: the remaining adapter becomes active
    only_default = logits(model, inputs)
    assert not torch.allclose(only_default, base)
    assert isinstance(model.model.layers[0].self_attn.o_proj, nn.Linear)
    assert isinstance(model.lm_head, nn.Linear)
    assert all(n.endswith(".default") or ".default." in n for n in trainable(model))
    delete_adapter(model, "default")
    assert module_classes(model) == classes
    assert_bit_identical(base_tensors(model), before)
    assert torch.equal(logits(model, inputs), base)
    assert "_lorakit" not in model.__dict__
    inject(model, LoraConfig(targets=["q_proj"]))  # a clean model again


def test_delete_keeping_wrappers_computes_the_base_and_reuses_them() -> None:
    """unwrap=False (what the server's evictions use): the emptied wrappers stay, compute exactly
    the base, and the next adapter on those layers is attached to the same wrapper objects."""
    model, inputs, base = two_adapters()
    with_default = logits(model, inputs)
    wrappers = {name: id(layer) for name, layer in lora_layers(model)}
    delete_adapter(model, "other", unwrap=False)
    delete_adapter(model, "default", unwrap=False)
    assert "_lorakit" not in model.__dict__
    assert {name: id(layer) for name, layer in lora_layers(model)} == wrappers
    assert all(not layer.adapter_names() for _, layer in lora_layers(model))
    assert isinstance(model.lm_head, nn.Linear)  # a modules_to_save copy is always dropped
    assert torch.equal(logits(model, inputs), base)
    inject(model, LoraConfig(r=4, targets=["q_proj", "v_proj"]))
    randomize_adapter(model, "default", 1)
    again = dict(lora_layers(model))
    assert all(id(again[n]) == wrappers[n] for n in again)
    assert torch.equal(logits(model, inputs), with_default)


def test_unknown_names_and_duplicates() -> None:
    model, _, _ = two_adapters()
    with pytest.raises(ConfigError, match=r"'nope'.*\['default', 'other'\]"):
        set_adapter(model, "nope")
    with pytest.raises(ConfigError, match="'nope'"):
        delete_adapter(model, "nope")
    with pytest.raises(ConfigError, match="already exists"):
        add_adapter(model, "other", LoraConfig(targets=["q_proj"]))
    with pytest.raises(LorakitError, match="inject"):
        set_adapter(tiny_llama(), "default")


@pytest.mark.parametrize("name", ["a", "A-b_9", "x" * 64, "default", "0"])
def test_valid_adapter_names(name: str) -> None:
    model = inject(tiny_bert(), LoraConfig(targets=["query"]), adapter_name=name)
    add_adapter(model, name + "2" if len(name) < 64 else "y", LoraConfig(targets=["value"]))


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "a.b", "a/b", "ä", "a\n", 3, None])
def test_invalid_adapter_names(name: object) -> None:
    model = tiny_bert()
    classes = module_classes(model)
    with pytest.raises(ConfigError, match=r"A-Z a-z 0-9 _ -"):
        inject(model, LoraConfig(targets=["query"]), adapter_name=name)
    assert module_classes(model) == classes and "_lorakit" not in model.__dict__
    inject(model, LoraConfig(targets=["query"]))
    with pytest.raises(ConfigError, match=r"A-Z a-z 0-9 _ -"):
        add_adapter(model, name, LoraConfig(targets=["query"]))


def test_failed_add_adapter_on_plain_model_leaves_no_state() -> None:
    model = tiny_bert()
    with pytest.raises(LorakitError):
        add_adapter(model, "first", LoraConfig(targets=["nope"]))
    assert "_lorakit" not in model.__dict__
    inject(model, LoraConfig(targets=["query"]))


def test_merge_named_adapter_and_refuse_deleting_merged() -> None:
    model, inputs, _ = two_adapters()
    before = base_tensors(model)
    set_adapter(model, "other")
    out_other = logits(model, inputs)
    merge(model)
    assert model.model.layers[0].self_attn.o_proj.merged_adapters == ["other"]
    torch.testing.assert_close(logits(model, inputs), out_other, rtol=0, atol=1e-5)
    with pytest.raises(LorakitError, match="unmerge first"):
        delete_adapter(model, "other")
    assert sorted(model.__dict__["_lorakit"].configs) == ["default", "other"]
    assert all("other" in layer.adapter_names() for _, layer in lora_layers(model) if layer.merged_adapters)
    with pytest.raises(ConfigError, match="'nope'"):
        merge(model, ["nope"])
    unmerge(model)
    merge(model, ["default", "other"])
    merged = [layer.merged_adapters for _, layer in lora_layers(model)]
    assert ["default"] in merged and ["other"] in merged
    unmerge(model)
    assert_bit_identical(base_tensors(model), before)


def test_bias_all_does_not_train_other_adapters_copies() -> None:
    model, inputs = tiny_bert(), text_inputs()
    base = logits(model, inputs)
    inject(model, LoraConfig(targets=["query"], modules_to_save=["classifier"]), adapter_name="a")
    add_adapter(model, "b", LoraConfig(targets=["value"], bias="all", modules_to_save=["classifier"]))
    set_adapter(model, "b")
    names = trainable(model)
    assert "classifier.modules_to_save.b.bias" in names
    assert "bert.encoder.layer.0.attention.self.query.base_layer.bias" in names
    assert not any(".a." in n or n.endswith(".a") or "original_module" in n for n in names)
    with torch.no_grad():
        model.classifier.modules_to_save["b"].weight.add_(1.0)
    assert not torch.allclose(logits(model, inputs), base)
    with disable_adapters(model):
        assert torch.equal(logits(model, inputs), base)


def _saved(tmp_path, name: str, r: int, seed: int):
    from lorakit import save_adapter

    model = inject(tiny_llama(), LoraConfig(r=r, alpha=2 * r, targets=["q_proj", "v_proj"]))
    randomize_adapter(model, "default", seed)
    return save_adapter(model.eval(), tmp_path / name), logits(model, text_inputs())


def test_recycled_modules_are_taken_over_by_the_next_load_of_that_rank(tmp_path) -> None:
    """delete_adapter(recycle=True) keeps A/B for the next loaded adapter of the same rank: the
    same module objects, holding exactly the new file's values; another rank allocates anew."""
    from lorakit import load_adapter

    first, _ = _saved(tmp_path, "first", 4, 1)
    second, second_logits = _saved(tmp_path, "second", 4, 2)
    third, third_logits = _saved(tmp_path, "third", 8, 3)
    model = load_adapter(tiny_llama(), first, "a")
    modules = {n: (id(m.lora_A["a"]), id(m.lora_B["a"])) for n, m in lora_layers(model)}
    for _, layer in lora_layers(model):
        layer.lora_A["a"].weight.grad = torch.ones_like(layer.lora_A["a"].weight)
    delete_adapter(model, "a", unwrap=False, recycle=True)
    load_adapter(model, second, "b")
    assert {n: (id(m.lora_A["b"]), id(m.lora_B["b"])) for n, m in lora_layers(model)} == modules
    assert all(m.lora_A["b"].weight.grad is None for _, m in lora_layers(model))
    assert not any(p.requires_grad for p in model.parameters())
    assert torch.equal(logits(model, text_inputs()), second_logits)
    delete_adapter(model, "b", unwrap=False, recycle=True)
    load_adapter(model, third, "c")  # rank 8: the rank-4 spares do not fit
    assert all(m.lora_A["c"].weight.shape[0] == 8 for _, m in lora_layers(model))
    assert torch.equal(logits(model, text_inputs()), third_logits)


def test_without_recycle_nothing_is_kept() -> None:
    model, _, _ = two_adapters()
    delete_adapter(model, "other", unwrap=False)
    assert all(layer._spare is None for _, layer in lora_layers(model))
