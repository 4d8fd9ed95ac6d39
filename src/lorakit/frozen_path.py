"""Put a model's frozen, unadapted ``nn.Linear`` layers on lorakit's GEMM path, and take them off.

``wrap_frozen_layers(model)`` replaces every plain ``nn.Linear`` whose parameters are all frozen
and that is not part of a LoRA layer or of a module trained in full (``modules_to_save``) by a
``FrozenLinear`` holding it as ``base_layer``; ``unwrap_frozen_layers`` puts the originals back.
Nothing of torch or transformers is patched: the model's module tree says what runs
(``lorakit inspect`` lists these layers). Call it after ``inject``: targeting sees wrapped
layers as ``FrozenLinear``, not as ``nn.Linear``.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from lorakit.layers import LORA_TYPES, ModulesToSave
from lorakit.layers.frozen import FrozenLinear

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
    wrappers: dict[int, FrozenLinear] = {}
    names = frozen_candidates(model)
    for name in names:
        layer = model.get_submodule(name)
        wrapper = wrappers.setdefault(id(layer), FrozenLinear(layer))
        wrapper.train(layer.training)
        _set_child(model, name, wrapper)
    return names


def frozen_layers(model: nn.Module) -> Iterator[tuple[str, FrozenLinear]]:
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, FrozenLinear):
            yield name, module


def unwrap_frozen_layers(model: nn.Module) -> list[str]:
    """Put the original layers back in place of every ``FrozenLinear``; returns their names."""
    found = list(frozen_layers(model))
    for name, wrapper in found:
        _set_child(model, name, wrapper.base_layer)
    return [name for name, _ in found]
