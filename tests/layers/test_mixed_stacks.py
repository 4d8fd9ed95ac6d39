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


def _storages(model: nn.Module, batch: object) -> dict[int, int]:
    """data_ptr of each adapted layer's gathered buffer in ``batch`` (a MixedBatch)."""
    out = {}
    for _, layer in lora_layers(model):
        state = batch.routing._prepared.get(id(layer))  # type: ignore[attr-defined]
        if state is not None:
            out[id(layer)] = state.storage.data_ptr()
    return out


def test_a_batch_that_replaces_another_reuses_its_buffers_and_stays_exact() -> None:
    """A decode loop's row assignments change a few rows at a time (rows leave, the last rows move
    into their places, new ones join at the end); each new batch re-gathers only those rows into
    the buffers of the batch it replaces, and every row still equals that row alone."""
    from lorakit.mixed import MixedBatch

    model = inject(tiny_llama(), LoraConfig(r=2, alpha=4, targets=["q_proj", "v_proj"]), "a")
    for n in "bcd":
        add_adapter(model, n, LoraConfig(r=4 if n == "c" else 2, alpha=3, targets=["q_proj", "v_proj"]))
    for i, n in enumerate("abcd"):
        _randomize(model, n, i)
    model.eval()
    ids = torch.randint(0, 99, (6, 5), generator=torch.Generator().manual_seed(3))

    def run(rows: list[str | None], prev: MixedBatch | None) -> MixedBatch:
        batch = MixedBatch(model, rows, replaces=prev)
        with torch.inference_mode(), batch:
            mixed = model(input_ids=ids[: len(rows)]).logits
        for i, name in enumerate(rows):
            alone = _alone(model, name, ids[i : i + 1])[0]
            assert (mixed[i] - alone).abs().max() <= TOL, (rows, i, name)
        return batch

    first = run(["a", "b", None, "c", "a"], None)
    reused = set(_storages(model, first).values())  # read now: the next batch takes them over
    # row 1 left, the last row moved into its place, "d" joined: the buffers are the first batch's
    second = run(["a", "a", None, "c", "d"], first)
    assert _storages(model, second) and set(_storages(model, second).values()) == reused
    with torch.no_grad():  # changed in place between two steps: its rows are re-gathered
        for _, layer in lora_layers(model):
            layer.lora_A["c"].weight.mul_(-1.5)
    third = run(["a", "a", None, "c", "d", "b"], second)
    # "a" deleted and "e" (a larger rank) added: "e" may take a's freed slot
    delete_adapter(model, "a")
    add_adapter(model, "e", LoraConfig(r=6, alpha=3, targets=["q_proj", "v_proj"]))
    _randomize(model, "e", 9)
    model.eval()
    fourth = run(["e", "d", None, "c", "b"], third)
    run(["b", "d", "e"], fourth)
    # a replaced batch entered again gathers afresh (its buffers now belong to the next one)
    with torch.inference_mode(), fourth:
        again = model(input_ids=ids[:5]).logits
    with torch.inference_mode(), MixedBatch(model, ["e", "d", None, "c", "b"]):
        fresh = model(input_ids=ids[:5]).logits
    assert torch.equal(again, fresh)


def test_a_model_cast_to_another_dtype_gathers_afresh() -> None:
    model = inject(tiny_llama(), LoraConfig(r=2, alpha=4, targets=["q_proj"]), "a")
    add_adapter(model, "b", LoraConfig(r=2, alpha=4, targets=["q_proj"]))
    for i, n in enumerate("ab"):
        _randomize(model, n, i)
    model.eval()
    ids = torch.randint(0, 99, (2, 5), generator=torch.Generator().manual_seed(4))
    _check_rows(model, ["a", "b"], ids, inference=True)
    model.double()  # the same Parameter objects, new data: the stacks must follow
    with torch.inference_mode(), mixed_adapters(model, ["a", "b"]):
        mixed = model(input_ids=ids).logits
    assert mixed.dtype == torch.float64
    for _, layer in lora_layers(model):
        assert layer.__dict__["_lorakit_mixed_stack"].ab.dtype == torch.float64
    for i, name in enumerate(["a", "b"]):
        assert (mixed[i] - _alone(model, name, ids[i : i + 1])[0]).abs().max() <= TOL
