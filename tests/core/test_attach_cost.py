"""Loading an adapter attaches the file's tensors and nothing else: no random init (the RNG is
untouched), no uninitialised value left behind, the same routing and flags as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import logits, randomize_lora, text_inputs, tiny_bert, tiny_llama
from lorakit import LoraConfig, inject, load_adapter, save_adapter
from lorakit.adapter_io import integrity
from lorakit.digest import tensor_buffer, tensor_bytes
from lorakit.errors import AdapterFileError
from lorakit.layers.dense import uninitialised_linear


def _saved(tmp_path: Path, make=tiny_bert, **cfg) -> Path:
    model = inject(make(), LoraConfig(r=4, **cfg))
    randomize_lora(model)
    return save_adapter(model, tmp_path / "adapter")


def test_loading_draws_nothing_from_the_random_generator(tmp_path: Path) -> None:
    path = _saved(tmp_path, targets=["query", "value"])
    model = tiny_bert()
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    load_adapter(model, path, "a")
    load_adapter(model, path, "b")  # a further adapter on existing wrappers, too
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("trainable", [False, True])
def test_loaded_adapter_equals_the_saved_one(tmp_path: Path, trainable: bool) -> None:
    source = inject(tiny_bert(), LoraConfig(r=4, targets=["query", "value"], modules_to_save=["classifier"]))
    randomize_lora(source)
    path = save_adapter(source, tmp_path / "adapter")
    model = load_adapter(tiny_bert(), path, is_trainable=trainable)
    inputs = text_inputs()
    source.eval(), model.eval()
    assert torch.equal(logits(model, inputs), logits(source, inputs))
    grads = {n for n, p in model.named_parameters() if p.requires_grad}
    if trainable:
        assert grads and all(".lora_" in n or ".modules_to_save." in n for n in grads)
    else:
        assert grads == set()
    for name, p in model.named_parameters():  # every adapter tensor came from the file
        assert torch.isfinite(p).all(), name


def test_a_file_missing_a_tensor_leaves_no_uninitialised_adapter(tmp_path: Path) -> None:
    path = _saved(tmp_path, make=tiny_llama, targets=["q_proj", "v_proj"])
    tensors, metadata = integrity.read_safetensors(path / "adapter_model.safetensors")
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    metadata = {k: v for k, v in metadata.items() if not k.startswith("lorakit")}  # a PEFT-style file
    from safetensors.torch import save_file

    save_file(tensors, str(path / "adapter_model.safetensors"), metadata=metadata)
    model = tiny_llama()
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.warns(UserWarning), pytest.raises(AdapterFileError, match="missing tensor"):
        load_adapter(model, path)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[n], t) for n, t in before.items())


def test_uninitialised_linear_is_an_ordinary_linear() -> None:
    layer = uninitialised_linear(5, 3, device=torch.device("cpu"), dtype=torch.float32)
    reference = nn.Linear(5, 3, bias=False)
    assert type(layer) is nn.Linear
    assert layer.state_dict().keys() == reference.state_dict().keys()
    assert (layer.in_features, layer.out_features, layer.bias) == (5, 3, None)
    assert repr(layer) == repr(reference)
    with torch.no_grad():
        layer.weight.copy_(reference.weight)
    x = torch.randn(4, 5)
    assert torch.equal(layer(x), reference(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_checksum_bytes_unchanged(dtype: torch.dtype) -> None:
    t = torch.randn(7, 5).to(dtype).t()  # non-contiguous on purpose
    expected = bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist())  # row-major raw bytes
    assert bytes(tensor_buffer(t)) == expected and tensor_bytes(t) == expected
    assert len(expected) == t.numel() * t.element_size()


def test_nan_is_named_among_many_tensors(tmp_path: Path) -> None:
    path = _saved(tmp_path, make=tiny_llama, targets=["q_proj", "k_proj", "v_proj", "o_proj"])
    tensors, metadata = integrity.read_safetensors(path / "adapter_model.safetensors")
    key = sorted(tensors)[len(tensors) // 2]
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] = float("nan")
    from safetensors.torch import save_file

    save_file(tensors, str(path / "adapter_model.safetensors"), metadata=metadata)
    with pytest.raises(AdapterFileError, match=f"tensor '{key}' holds NaN"):
        integrity.read_safetensors(path / "adapter_model.safetensors")
