"""Swap modules of a model for lorakit's faster equivalents, and back: explicit, reversible wrappers.

- ``wrap_frozen_layers(model)`` replaces every plain ``nn.Linear`` whose parameters are all
  frozen and that is not part of a LoRA layer or of a module trained in full
  (``modules_to_save``) by a ``FrozenLinear`` (its products on lorakit's GEMM path, no weight
  gradient).
- ``wrap_output_head(model)`` does the same for the output head alone (what generation uses).
- ``prepare_for_serving(model)`` readies a frozen model for inference with adapters loaded and
  evicted at run time: the output head as above, every other linear layer in an empty LoRA
  wrapper (it computes its base exactly, and adapters attach to it without building wrappers),
  and, with ``packed=True``, every one of them multiplying by oneDNN-packed weights while no
  gradient is recorded (layers/packed.py). ``lorakit serve`` does this.
- ``wrap_gated_mlps(model)`` replaces every Llama-family gated MLP that ``GatedMLP`` reproduces
  exactly by a ``GatedMLP`` (one activation fewer kept for backward).

``FrozenLinear`` holds the original as ``base_layer``; ``GatedMLP`` holds the MLP's own
projections under their names (parameter names stay), and ``unwrap_*`` puts the originals back. Nothing
of torch or transformers is patched: the model's module tree says what runs (``lorakit inspect``
lists these modules). Call them after ``inject``: targeting sees wrapped layers as wrappers.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from lorakit.layers import LORA_TYPES, LoraLinear, ModulesToSave, is_linear_like, wrap
from lorakit.layers.frozen import FrozenLinear
from lorakit.layers.gated_mlp import GatedMLP, gated_mlp_matches, is_gated_silu_mlp
from lorakit.layers.packed import prepack
from lorakit.targeting import base_modules, inside_any, is_output_head

_OPAQUE = (*LORA_TYPES, ModulesToSave, FrozenLinear)


def _set_child(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def frozen_candidates(model: nn.Module) -> list[str]:
    """Names of the plain, fully frozen ``nn.Linear`` layers outside LoRA / modules_to_save."""
    found: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, _OPAQUE):
                continue
            if type(child) is nn.Linear and not any(p.requires_grad for p in child.parameters()):
                found.append(name)
            else:
                visit(child, name)

    visit(model, "")
    return found


def wrap_frozen_layers(model: nn.Module) -> list[str]:
    """Wrap every frozen, unadapted ``nn.Linear`` of ``model`` in a ``FrozenLinear``, in place;
    returns the wrapped names (a layer shared by two parents, e.g. a tied head, is wrapped once
    and the wrapper is shared the same way)."""
    return _wrap_frozen(model, frozen_candidates(model))


def _wrap_frozen(model: nn.Module, names: list[str]) -> list[str]:
    wrappers: dict[int, FrozenLinear] = {}
    for name in names:
        layer = model.get_submodule(name)
        wrapper = wrappers.setdefault(id(layer), FrozenLinear(layer))
        wrapper.train(layer.training)
        _set_child(model, name, wrapper)
    return names


def wrap_output_head(model: nn.Module) -> list[str]:
    """Wrap only the model's output head (the LM head) in a ``FrozenLinear``, if it is a plain
    frozen ``nn.Linear``; returns the wrapped names (empty when there is none).

    For generation: a decode step multiplies a few rows by the whole vocabulary (SmolLM2:
    49,152 x 576), the largest product of the step, which torch's GEMM runs on one thread at
    these row counts. Adapters never target the head, so loading them is unaffected."""
    heads = [n for n in frozen_candidates(model) if is_output_head(n, model, model.get_submodule(n))]
    return _wrap_frozen(model, heads)


def prepare_for_serving(model: nn.Module, *, packed: bool = True) -> list[str]:
    """Ready a model for inference with adapters loaded at run time, in place: every parameter is
    frozen, and the names of the layers wrapped are returned (LoRA wrappers already there are
    kept, and get the packing setting).

    The output head goes into a ``FrozenLinear`` (``wrap_output_head``); every other linear layer
    (nn.Linear, Conv1D, QuantLinear) outside a ``modules_to_save`` copy into an empty ``LoraLinear``,
    which computes its base module exactly: the first adapter loaded builds no wrapper, and an
    evicted one leaves nothing to rebuild (``delete_adapter(..., unwrap=False)``). With ``packed``
    all of them compute their frozen products from oneDNN-packed weights while no gradient is
    recorded (16-row decoding 1.23x faster here, BENCHMARKS.md); the packed copies are made here,
    so the extra memory (one more copy of those weights) is taken at once and stays constant."""
    model.requires_grad_(False)
    names = wrap_output_head(model)
    # inside these, layers belong to something else: a trained copy, or a FrozenLinear's own base
    opaque = [n for n, m in model.named_modules() if isinstance(m, (ModulesToSave, FrozenLinear))]
    for name, module in base_modules(model):
        owner = model.get_submodule(name)
        if isinstance(owner, (*LORA_TYPES, FrozenLinear)) or not is_linear_like(module):
            continue
        if is_output_head(name, model, module) or inside_any(name, opaque):
            continue
        layer = wrap(module, name)
        layer.train(module.training)
        _set_child(model, name, layer)
        names.append(name)
    for _, module in model.named_modules():
        if isinstance(module, LoraLinear):
            module.packed_base = packed
        elif isinstance(module, FrozenLinear):
            module.packed = packed
        else:
            continue
        if packed:  # now, not at the first request: memory is fixed from start-up
            prepack(module.base_layer, module._packed)
    return names


def wrapped(model: nn.Module, kind: type[nn.Module]) -> Iterator[tuple[str, nn.Module]]:
    """(name, wrapper) of every ``kind`` wrapper in ``model``."""
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, kind):
            yield name, module


def unwrap_frozen_layers(model: nn.Module) -> list[str]:
    """Put the original layers back in place of every ``FrozenLinear``; returns their names."""
    found = list(wrapped(model, FrozenLinear))
    for name, wrapper in found:
        _set_child(model, name, wrapper.base_layer)
    return [name for name, _ in found]


def wrap_gated_mlps(model: nn.Module) -> list[str]:
    """Put a ``GatedMLP`` in place of every gated SiLU MLP of ``model`` that it computes exactly
    (checked on a random input), in place; returns the names. Parameter names do not change."""
    names = [name for name, module in model.named_modules() if is_gated_silu_mlp(module)]
    done = []
    for name in names:
        module = model.get_submodule(name)
        if gated_mlp_matches(module):
            _set_child(model, name, GatedMLP(module))
            done.append(name)
    return done


def unwrap_gated_mlps(model: nn.Module) -> list[str]:
    """Put the original MLPs back in place of every ``GatedMLP``; returns their names."""
    found = list(wrapped(model, GatedMLP))
    for name, wrapper in found:
        _set_child(model, name, wrapper.original())
    return [name for name, _ in found]
