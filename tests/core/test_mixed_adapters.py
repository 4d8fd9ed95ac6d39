"""A mixed-adapter batch: every row equals that row run alone with its own adapter."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import tiny_bert, tiny_gpt2, tiny_llama
from lorakit import LoraConfig, add_adapter, disable_adapters, inject, mixed_adapters, set_adapter
from lorakit.errors import LorakitError

TOL = 1e-5


def _randomize(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name or ".modules_to_save." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _three_adapters(model: nn.Module, targets: list[str], extra: list[str], heads: list[str]) -> nn.Module:
    """Adapters with different ranks, scalings and target sets: a (r=2), b (r=6, rslora), c (r=4)."""
    inject(model, LoraConfig(r=2, alpha=4, targets=targets, modules_to_save=heads))
    add_adapter(model, "b", LoraConfig(r=6, alpha=3, use_rslora=True, targets=targets, modules_to_save=heads))
    add_adapter(model, "c", LoraConfig(r=4, alpha=8, targets=extra, modules_to_save=heads))
    _randomize(model, 0)
    return model.eval()


def _alone(model: nn.Module, name: str | None, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        if name is None:
            with disable_adapters(model):
                return model(**inputs).logits
        set_adapter(model, name)
        return model(**inputs).logits


CASES = {
    "llama": (tiny_llama, ["q_proj", "v_proj"], ["k_proj", "o_proj", "q_proj"], []),
    "gpt2-conv1d": (tiny_gpt2, ["c_attn"], ["c_proj", "c_fc"], []),
    "bert-heads": (lambda: tiny_bert(3), ["query", "value"], ["key", "dense"], ["classifier"]),
}


@pytest.mark.parametrize("strategy", ["gather", "segments"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_row_equals_that_row_alone(case: str, strategy: str) -> None:
    build, targets, extra, heads = CASES[case]
    model = _three_adapters(build(), targets, extra, heads)
    rows = ["default", None, "b", "c", "default", "b"]
    ids = torch.randint(0, 99, (len(rows), 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), mixed_adapters(model, rows, strategy=strategy):
        mixed = model(input_ids=ids).logits
    outputs = {n: _alone(model, n, {"input_ids": ids}) for n in set(rows)}
    for i, name in enumerate(rows):
        alone = _alone(model, name, {"input_ids": ids[i : i + 1]})[0]
        assert (mixed[i] - alone).abs().max() <= TOL, (case, i, name)
        # and the adapters really differ, so the check above can fail
        others = [outputs[n][i] for n in set(rows) if n != name]
        assert all((mixed[i] - o).abs().max() > 1e-3 for o in others), (case, i, name)


def test_active_adapter_and_grad_flags_unchanged_after_block() -> None:
    model = _three_adapters(tiny_llama(), ["q_proj"], ["v_proj"], [])
    set_adapter(model, "b")
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(0))
    before = _alone(model, "b", {"input_ids": ids})
    with torch.no_grad(), mixed_adapters(model, ["default", "c"]):
        model(input_ids=ids)
    after = model(input_ids=ids).logits.detach()
    assert torch.equal(before, after)


def test_gradients_flow_through_a_mixed_forward() -> None:
    model = _three_adapters(tiny_llama(), ["q_proj", "v_proj"], ["q_proj"], [])
    ids = torch.randint(0, 99, (3, 5), generator=torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    a_default = params["model.layers.0.self_attn.q_proj.lora_A.default.weight"].requires_grad_(True)
    a_b = params["model.layers.0.self_attn.q_proj.lora_A.b.weight"].requires_grad_(True)
    with mixed_adapters(model, ["default", None, "default"]):
        model(input_ids=ids).logits.sum().backward()
    assert a_default.grad is not None and a_default.grad.abs().sum() > 0
    assert a_b.grad is None


def test_refusals_name_the_problem() -> None:
    model = _three_adapters(tiny_llama(), ["q_proj"], ["v_proj"], [])
    with pytest.raises(LorakitError, match="no adapter named 'nope'"):
        mixed_adapters(model, ["default", "nope"])
    add_adapter(model, "dora", LoraConfig(r=2, targets=["q_proj"], use_dora=True))
    with pytest.raises(LorakitError, match="'dora' is a DoRA adapter"):
        mixed_adapters(model, ["dora"])
    with pytest.raises(LorakitError, match="strategy 'fast' is unknown"):
        mixed_adapters(model, ["default"], strategy="fast")
    ids = torch.randint(0, 99, (3, 5))
    mix = mixed_adapters(model, ["default", "c"])
    with pytest.raises(ValueError, match=r"3 rows .* 2 row adapters"), mix:
        model(input_ids=ids)
    with mixed_adapters(model, ["default"]), pytest.raises(LorakitError, match="nested"):  # noqa: SIM117
        with mixed_adapters(model, ["c"]):
            pass


def test_heads_of_different_shapes_are_refused_in_one_batch() -> None:
    from lorakit.layers import ModulesToSave

    model = _three_adapters(tiny_bert(3), ["query"], ["value"], ["classifier"])
    head = next(m for m in model.modules() if isinstance(m, ModulesToSave))
    head.modules_to_save["c"] = nn.Linear(32, 5)
    ids = torch.randint(0, 99, (2, 5))
    with torch.no_grad(), mixed_adapters(model, ["default", "c"]), pytest.raises(ValueError, match="shapes"):
        model(input_ids=ids)
