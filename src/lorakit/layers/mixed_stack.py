"""The per-layer adapter stacks behind the gather strategy of mixed-adapter forwards (mixed.py).

Each LoRA layer keeps the adapters it has served stacked in one tensor (``_LayerStack``), so that a
row assignment is an ``index_select`` of slots rather than a copy per adapter, and a row
assignment that replaces another (a decode loop's rows after a few leave and join) re-gathers only
the rows whose slot changed, into the buffer of the one it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import torch
from torch import nn


@dataclass
class Gathered:
    a_rows: torch.Tensor  # (rows, in, R)
    b_rows: torch.Tensor  # (rows, R, out), scaling folded in
    storage: torch.Tensor | None = None  # (capacity >= rows, in * R + R * out): what a_rows, b_rows view
    slots: tuple[int, ...] = ()  # the stack slot of each row, when gathered from a stack
    version: int = -1  # the stack's version then


@dataclass
class PrepareContext:
    """What the layers of one row assignment share while they prepare."""

    indices: dict[tuple, torch.Tensor] = field(default_factory=dict)
    """Index tensors by (device, values): layers whose stacks agree share them."""
    changes: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    """(changed rows, their new slots) by (device, old slots, new slots), likewise shared."""
    spare: dict[int, Any] = field(default_factory=dict)
    """The states, by layer id, of a row assignment this one replaces: their buffers are reused
    (a decode loop re-gathers at nearly every step; fresh buffers each time cost page faults)."""


class _LayerStack:
    """One layer's adapters kept stacked between batches, zero-padded to the largest rank R seen:
    row ``slot`` of ``ab`` holds that adapter's A^T (in x R) then B^T (R x out, scaling folded in),
    so that a new row assignment is one ``index_select`` per layer (``a`` and ``b`` are views of
    the two parts). Slot 0 is all zeros (base rows).

    An adapter's slot is written when a batch first uses it, rewritten when its weights change
    (another tensor, or written in place: ``_version``) and freed once it leaves the layer.
    """

    def __init__(self) -> None:
        self.version = 0  # bumped whenever a slot's contents change
        self._reset()

    def _reset(self) -> None:
        self.ab: torch.Tensor | None = None  # (slots, in * R + R * out)
        self.fan_in = self.fan_out = self.width = 0
        self.slots: dict[str, int] = {}
        self.sources: dict[str, tuple[torch.Tensor, torch.Tensor, int, int, float]] = {}
        self.free: list[int] = []
        self.version += 1

    @property
    def a(self) -> torch.Tensor | None:
        """(slots, in, R)"""
        if self.ab is None:
            return None
        return self.ab[:, : self.fan_in * self.width].view(-1, self.fan_in, self.width)

    @property
    def b(self) -> torch.Tensor | None:
        """(slots, R, out)"""
        if self.ab is None:
            return None
        return self.ab[:, self.fan_in * self.width :].view(-1, self.width, self.fan_out)

    def rows(
        self, layer: nn.Module, names: list[str], rows: list[str | None], ctx: PrepareContext | None = None
    ) -> Gathered:
        a_mods = layer._modules["lora_A"]._modules
        b_mods = layer._modules["lora_B"]._modules
        like = a_mods[names[0]]._parameters["weight"]
        if self.ab is not None and (self.ab.device != like.device or self.ab.dtype != like.dtype):
            self._reset()  # the model moved or changed dtype (Module.to keeps the same tensors)
        for gone in [n for n in self.slots if n not in a_mods]:
            self.free.append(self.slots.pop(gone))
            del self.sources[gone]
        # Whether each slot holds its adapter's present tensors unchanged (same objects, _version
        # and scaling), checked inline without nn.Module attribute look-ups: a server re-gathers
        # ~20 adapters on 100+ layers at nearly every decode step, and this check was a third of it.
        scaling = layer.scaling
        stale = []
        for n in names:
            held = self.sources.get(n)
            a_w = a_mods[n]._parameters["weight"]
            b_w = b_mods[n]._parameters["weight"]
            if (
                held is None
                or held[0] is not a_w
                or held[1] is not b_w
                or held[2] != a_w._version
                or held[3] != b_w._version
                or held[4] != scaling[n]
            ):
                stale.append(n)
        if stale:  # plain tensors even inside inference_mode, so a later no_grad batch may update them
            with torch.inference_mode(False), torch.no_grad():
                for n in stale:
                    self._refresh(layer, n)
        assert self.ab is not None
        slots = tuple(map(self.slots.get, rows, repeat(0)))  # base rows (None): slot 0
        spare = None if ctx is None else ctx.spare.pop(id(layer), None)
        storage = self._gather(slots, spare, ctx or PrepareContext())
        gathered = storage[: len(slots)]
        fan_in, fan_out, width = self.fan_in, self.fan_out, self.width
        a_rows = gathered[:, : fan_in * width].view(-1, fan_in, width)
        b_rows = gathered[:, fan_in * width :].view(-1, width, fan_out)
        rank = max(map(layer.r.__getitem__, names))
        if rank < width:
            a_rows, b_rows = a_rows[:, :, :rank], b_rows[:, :rank, :]
        return Gathered(a_rows, b_rows, storage, slots, self.version)

    def _gather(self, slots: tuple[int, ...], spare: Gathered | None, ctx: PrepareContext) -> torch.Tensor:
        """The rows' slots copied into a buffer (rows first): ``spare``'s when it fits, and then
        only the rows whose slot differs from ``spare``'s (a batch whose rows mostly stay where
        they were re-gathers a few rows, not all of them)."""
        assert self.ab is not None
        n, device = len(slots), self.ab.device
        buf = None if spare is None else spare.storage
        fits = (
            buf is not None
            and buf.shape[0] >= n
            and buf.shape[1] == self.ab.shape[1]
            and buf.dtype == self.ab.dtype
            and buf.device == device
            and (torch.is_inference_mode_enabled() or not buf.is_inference())
        )
        if fits and spare is not None and spare.version == self.version:
            if spare.slots != slots:
                pos, src = _changes(ctx, device, spare.slots, slots)
                buf.index_copy_(0, pos, self.ab.index_select(0, src))
            return buf
        if not fits:  # room for a few more rows: a growing batch reallocates every 8 rows, not every row
            buf = self.ab.new_empty(-(-n // 8) * 8, self.ab.shape[1])
        assert buf is not None
        torch.index_select(self.ab, 0, _index(ctx, device, slots), out=buf[:n])
        return buf

    def _refresh(self, layer: nn.Module, name: str) -> None:
        a_w, b_w = layer.lora_A[name].weight, layer.lora_B[name].weight
        scaling = layer.scaling[name]
        r = layer.r[name]
        slot = self.slots.get(name)
        if slot is None:
            slot = self.free.pop() if self.free else len(self.slots) + 1
        self._make_room(a_w, slot, r, layer.in_features, layer.out_features)
        a, b = self.a, self.b
        assert a is not None and b is not None
        a[slot].zero_()
        b[slot].zero_()
        a[slot, :, :r] = a_w.t()
        b[slot, :r, :] = b_w.t() * scaling
        self.slots[name] = slot
        self.sources[name] = (a_w, b_w, a_w._version, b_w._version, scaling)
        self.version += 1

    def _make_room(self, like: torch.Tensor, slot: int, rank: int, fan_in: int, fan_out: int) -> None:
        """Grow the stack (doubling the slots) so that ``slot`` exists and rank ``rank`` fits."""
        have_slots = 0 if self.ab is None else self.ab.shape[0]
        if slot < have_slots and rank <= self.width:
            return
        slots = max(slot + 1, 2 * have_slots) if slot >= have_slots else have_slots
        width = max(rank, self.width)
        old_a, old_b, old_width = self.a, self.b, self.width
        self.ab = like.new_zeros(slots, fan_in * width + width * fan_out)
        self.fan_in, self.fan_out, self.width = fan_in, fan_out, width
        if old_a is not None and old_b is not None:
            a, b = self.a, self.b
            assert a is not None and b is not None
            a[:have_slots, :, :old_width] = old_a
            b[:have_slots, :old_width, :] = old_b


def _index(ctx: PrepareContext, device: torch.device, values: tuple[int, ...]) -> torch.Tensor:
    """``values`` as an index tensor, one per row assignment and device (layers share them)."""
    index = ctx.indices.get((device, values))
    if index is None:
        index = ctx.indices[(device, values)] = torch.tensor(values, dtype=torch.long, device=device)
    return index


def _changes(
    ctx: PrepareContext, device: torch.device, old: tuple[int, ...], new: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows whose slot changed from ``old`` to ``new``, their new slots) as index tensors;
    computed once per pair and device (the layers of a model mostly agree)."""
    key = (device, old, new)
    found = ctx.changes.get(key)
    if found is None:
        # zip stops at the shorter: rows past len(new) left, rows past len(old) joined
        changed = [i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b]
        changed += range(len(old), len(new))
        found = ctx.changes[key] = (
            torch.tensor(changed, dtype=torch.long, device=device),
            torch.tensor([new[i] for i in changed], dtype=torch.long, device=device),
        )
    return found


def stack_of(layer: nn.Module) -> _LayerStack:
    stack = layer.__dict__.get("_lorakit_mixed_stack")
    if stack is None:
        stack = layer.__dict__["_lorakit_mixed_stack"] = _LayerStack()
    return stack
