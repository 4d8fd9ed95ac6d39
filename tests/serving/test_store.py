"""The adapter store: least-recently-used eviction, pinned adapters stay, DoRA refused at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit import LoraConfig, inject, save_adapter
from lorakit.errors import AdapterFileError
from lorakit.serving.store import AdapterStore, StoreFull, UnknownAdapter


def _store(pool: Path, max_loaded: int, log: list) -> AdapterStore:
    return AdapterStore(
        max_loaded,
        lambda info: log.append(("load", info.name)),
        lambda info: log.append(("evict", info.name)),
        "causal_lm",
        adapters_dir=pool,
    )


def test_lru_eviction_skips_pinned_adapters(lm_assets: dict[str, Path]) -> None:
    log: list = []
    store = _store(lm_assets["pool"], 2, log)
    store.acquire("a")
    store.acquire("b")
    with pytest.raises(StoreFull):
        store.acquire("c")  # both loaded adapters are in use
    store.release("a")
    store.acquire("c")  # a is idle: evicted
    assert log == [("load", "a"), ("load", "b"), ("evict", "a"), ("load", "c")]
    store.release("b")
    store.release("c")
    store.acquire("b")  # b becomes the most recently used
    store.release("b")
    store.acquire("a")  # so c (least recent) goes
    assert log[-2:] == [("evict", "c"), ("load", "a")]
    assert list(store.loaded) == ["b", "a"]


def test_unknown_and_unsafe_names(lm_assets: dict[str, Path]) -> None:
    store = _store(lm_assets["pool"], 2, [])
    for name in ("nobody", "../a", "a/b", ""):
        with pytest.raises(UnknownAdapter):
            store.lookup(name)


def test_dora_adapters_are_refused_at_load_time(lm_assets: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = inject(
        AutoModelForCausalLM.from_pretrained(lm_assets["base"]),
        LoraConfig(r=2, targets=["q_proj"], use_dora=True),
    )
    save_adapter(model, tmp_path / "dora")
    store = _store(tmp_path, 2, [])
    with pytest.raises(AdapterFileError, match="DoRA adapter"):
        store.acquire("dora")


def test_evicted_adapters_leave_their_wrappers_and_the_base_exact(lm_assets: dict[str, Path]) -> None:
    """The server wraps every linear layer but the head up front and never rebuilds a wrapper:
    loads attach to them, evictions empty them, and a model whose adapters were all evicted
    computes exactly what the untouched base does."""
    import torch
    from transformers import AutoModelForCausalLM

    from lorakit.model import lora_layers
    from lorakit.serving.backend import Backend

    backend = Backend(str(lm_assets["base"]))
    store = AdapterStore(1, backend.attach, backend.detach, "causal_lm", adapters_dir=lm_assets["pool"])
    ids = torch.tensor([[3, 14, 15, 9, 2, 6]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(lm_assets["base"]).eval()(input_ids=ids).logits
    wrappers = {name: id(layer) for name, layer in lora_layers(backend.lm)}
    linears = {n for n, m in backend.lm.named_modules() if type(m) is torch.nn.Linear}
    assert {f"{n}.base_layer" for n in wrappers} == linears - {"lm_head.base_layer"}
    store.acquire("a")  # q_proj, v_proj
    store.release("a")
    assert {name: id(layer) for name, layer in lora_layers(backend.lm)} == wrappers
    store.acquire("c")  # v_proj only: "a" is evicted, every wrapper stays
    store.release("c")
    assert {name: id(layer) for name, layer in lora_layers(backend.lm)} == wrappers
    assert list(store.loaded) == ["c"]
    store.evict("c")
    assert all(not layer.adapter_names() for _, layer in lora_layers(backend.lm))
    with torch.no_grad():
        assert torch.equal(backend.lm(input_ids=ids).logits, base)
