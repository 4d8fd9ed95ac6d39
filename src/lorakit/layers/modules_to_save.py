"""A fully trained copy of a module (e.g. a classifier head) per adapter."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lorakit.layers.mixed import RowRouting, mixed_saved_forward

_OWN = frozenset({"original_module", "modules_to_save", "active_adapters", "disabled", "row_routing"})


class ModulesToSave(nn.Module):
    """Keeps ``original_module`` frozen and trains ``modules_to_save[adapter]``, a copy of it."""

    def __init__(self, original_module: nn.Module) -> None:
        super().__init__()
        self.original_module = original_module
        self.modules_to_save = nn.ModuleDict()
        self.active_adapters: list[str] = []
        self.disabled = False
        self.row_routing: RowRouting | None = None
        """Set by ``lorakit.mixed_adapters``: each row through its own adapter's copy."""

    def add_adapter(self, name: str) -> None:
        clone = copy.deepcopy(self.original_module)
        clone.requires_grad_(True)
        self.modules_to_save[name] = clone

    def delete_adapter(self, name: str) -> None:
        del self.modules_to_save[name]
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def adapter_names(self) -> list[str]:
        return list(self.modules_to_save.keys())

    def active_module(self) -> nn.Module:
        for name in self.active_adapters:
            if name in self.modules_to_save:
                return self.modules_to_save[name]
        return self.original_module

    def forward(self, *args: torch.Tensor, **kwargs: object) -> torch.Tensor:
        if self.row_routing is not None:
            return mixed_saved_forward(self, self.row_routing.rows, args, kwargs)
        if self.disabled:
            return self.original_module(*args, **kwargs)
        return self.active_module()(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in _OWN:
                raise
            return getattr(self.active_module(), name)
