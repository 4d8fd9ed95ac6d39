"""Per-row adapters in one forward pass: row i of the batch runs adapter ``rows[i]`` (or none).

A LoRA layer inside a mixed forward computes, for every row ``i`` with adapter ``n = rows[i]``,

    h_i = W0 x_i + scaling_n * B_n A_n x_i          (h_i = W0 x_i for a row with no adapter)

Two strategies compute this; both are small objects with ``prepare`` (once per row assignment,
cached while the assignment holds) and ``apply`` (every forward):

* ``GatherBmm`` (the default): the rows' A and B are gathered into per-row stacks, zero-padded
  to the largest rank in the batch, with the scaling folded into B; a row with no adapter gets
  zeros. The update is then two batched products for the whole batch, ``bmm(x, A_rows)`` and
  ``baddbmm(out, ., B_rows)``, whatever the number of adapters. Outside autograd each layer keeps
  the adapters it has served stacked (``_LayerStack``), so a new row assignment (a request joins
  or leaves) is one ``index_select`` per stack, not a copy per adapter.
* ``SegmentLoop``: rows are grouped by adapter and each group runs its own two products and an
  ``index_add_`` into the output: 3-4 operations per distinct adapter per layer.

Measured on SmolLM2-135M (bench/serve_layer.py, BENCHMARKS.md "Serving"): in a decode step
(one token per row) the per-adapter operations of ``SegmentLoop`` dominate as soon as a batch
holds more than a few adapters, while ``GatherBmm`` costs the same for 1 or 16 adapters; the
zero padding to the largest rank costs nothing measurable at LoRA ranks. Both use only tensor
operations (no host loops over elements), so they run on any device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


class MixedStrategy(Protocol):
    """How a LoRA layer applies one adapter per row."""

    name: str

    def prepare(self, layer: nn.Module, rows: list[str | None]) -> Any:
        """Whatever ``apply`` needs for this row assignment, or None when no row adapts this layer."""
        ...

    def apply(self, state: Any, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` (the base output) plus each row's update; ``x`` and ``out`` are (rows, ..., features)."""
        ...


def _rows_on_layer(layer: nn.Module, rows: list[str | None]) -> list[str | None]:
    """Each row's adapter if this layer has it, else None (the row runs the base here)."""
    present = set(layer.lora_A.keys())
    return [n if n in present else None for n in rows]


def _as_rows(t: torch.Tensor, n_rows: int) -> torch.Tensor:
    """View (rows, ..., f) as (rows, tokens, f); a 2-D (rows, f) input is one token per row."""
    if t.shape[0] != n_rows:
        raise ValueError(
            f"mixed-adapter forward: the input has {t.shape[0]} rows in its first dimension, "
            f"but {n_rows} row adapters were given"
        )
    return t.reshape(n_rows, -1, t.shape[-1])


@dataclass
class _Gathered:
    a_rows: torch.Tensor  # (rows, in, R)
    b_rows: torch.Tensor  # (rows, R, out), scaling folded in


class _LayerStack:
    """One layer's adapters kept stacked between batches: ``a`` (slots, in, R) and ``b`` (slots, R,
    out, scaling folded in), zero-padded to the largest rank; slot 0 is all zeros (base rows).

    An adapter's slot is written when a batch first uses it, rewritten when its weights change
    (another tensor, or written in place: ``_version``) and freed once it leaves the layer, so a
    new batch composition costs one ``index_select`` per stack instead of a copy per adapter.
    """

    def __init__(self) -> None:
        self.a: torch.Tensor | None = None
        self.b: torch.Tensor | None = None
        self.slots: dict[str, int] = {}
        self.sources: dict[str, tuple[torch.Tensor, torch.Tensor, int, int, float]] = {}
        self.free: list[int] = []

    def rows(self, layer: nn.Module, names: list[str], rows: list[str | None]) -> _Gathered:
        present = layer._modules["lora_A"]._modules
        for gone in [n for n in self.slots if n not in present]:
            self.free.append(self.slots.pop(gone))
            del self.sources[gone]
        # Checked without nn.Module attribute look-ups: a server re-gathers ~16 adapters on 100+
        # layers whenever a request joins or leaves, and those look-ups were most of that cost.
        stale = [n for n in names if not self._current(layer, n)]
        if stale:  # plain tensors even inside inference_mode, so a later no_grad batch may update them
            with torch.inference_mode(False), torch.no_grad():
                for n in stale:
                    self._refresh(layer, n)
        assert self.a is not None and self.b is not None
        rank = max(layer.r[n] for n in names)
        index = torch.tensor([self.slots[n] if n else 0 for n in rows], device=self.a.device)
        return _Gathered(
            self.a[:, :, :rank].index_select(0, index), self.b[:, :rank, :].index_select(0, index)
        )

    def _current(self, layer: nn.Module, name: str) -> bool:
        """Whether ``name``'s slot holds its present tensors, unchanged (same objects, ``_version``
        and scaling)."""
        held = self.sources.get(name)
        if held is None:
            return False
        tables = layer._modules
        a_w = tables["lora_A"]._modules[name]._parameters["weight"]
        b_w = tables["lora_B"]._modules[name]._parameters["weight"]
        return (
            held[0] is a_w
            and held[1] is b_w
            and held[2:] == (a_w._version, b_w._version, layer.scaling[name])
        )

    def _refresh(self, layer: nn.Module, name: str) -> None:
        a_w, b_w = layer.lora_A[name].weight, layer.lora_B[name].weight
        scaling = layer.scaling[name]
        r = layer.r[name]
        slot = self.slots.get(name)
        if slot is None:
            slot = self.free.pop() if self.free else len(self.slots) + 1
        self._make_room(a_w, slot, r, layer.in_features, layer.out_features)
        assert self.a is not None and self.b is not None
        self.a[slot].zero_()
        self.b[slot].zero_()
        self.a[slot, :, :r] = a_w.t()
        self.b[slot, :r, :] = b_w.t() * scaling
        self.slots[name] = slot
        self.sources[name] = (a_w, b_w, a_w._version, b_w._version, scaling)

    def _make_room(self, like: torch.Tensor, slot: int, rank: int, fan_in: int, fan_out: int) -> None:
        """Grow the stacks (doubling the slots) so that ``slot`` exists and rank ``rank`` fits."""
        have_slots = 0 if self.a is None else self.a.shape[0]
        have_rank = 0 if self.a is None else self.a.shape[2]
        if slot < have_slots and rank <= have_rank:
            return
        slots = max(slot + 1, 2 * have_slots) if slot >= have_slots else have_slots
        width = max(rank, have_rank)
        a = like.new_zeros(slots, fan_in, width)
        b = like.new_zeros(slots, width, fan_out)
        if self.a is not None and self.b is not None:
            a[:have_slots, :, :have_rank] = self.a
            b[:have_slots, :have_rank, :] = self.b
        self.a, self.b = a, b


def _stack_of(layer: nn.Module) -> _LayerStack:
    stack = layer.__dict__.get("_lorakit_mixed_stack")
    if stack is None:
        stack = layer.__dict__["_lorakit_mixed_stack"] = _LayerStack()
    return stack


class GatherBmm:
    """Per-row stacks of A and B (padded to the largest rank) and two batched products."""

    name = "gather"

    def prepare(self, layer: nn.Module, rows: list[str | None]) -> _Gathered | None:
        rows = _rows_on_layer(layer, rows)
        names = sorted({n for n in rows if n is not None})
        if not names:
            return None
        if not torch.is_grad_enabled():
            return _stack_of(layer).rows(layer, names, rows)
        # Recording a graph: gather from the adapters' own tensors, so gradients reach them.
        rank = max(layer.r[n] for n in names)
        weight = layer.lora_A[names[0]].weight
        a_table = weight.new_zeros(len(names) + 1, layer.in_features, rank)
        b_table = weight.new_zeros(len(names) + 1, rank, layer.out_features)
        for i, n in enumerate(names, start=1):
            r = layer.r[n]
            a_table[i, :, :r] = layer.lora_A[n].weight.t()
            b_table[i, :r, :] = layer.lora_B[n].weight.t() * layer.scaling[n]
        slot = {n: i for i, n in enumerate(names, start=1)}
        index = torch.tensor([slot.get(n, 0) if n else 0 for n in rows], device=weight.device)
        return _Gathered(a_table.index_select(0, index), b_table.index_select(0, index))

    def apply(self, state: _Gathered, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        n = state.a_rows.shape[0]
        x3 = _as_rows(x, n).to(state.a_rows.dtype)
        out3 = _as_rows(out, n)
        xa = torch.bmm(x3, state.a_rows)
        if out3.dtype == state.b_rows.dtype and not torch.is_grad_enabled() and out3.is_contiguous():
            return out3.baddbmm_(xa, state.b_rows).view(out.shape)
        update = torch.bmm(xa, state.b_rows).to(out3.dtype)
        return (out3 + update).view(out.shape)


@dataclass
class _Segment:
    index: torch.Tensor  # rows using this adapter
    a: torch.Tensor  # (r, in)
    b: torch.Tensor  # (out, r), scaling folded in


class SegmentLoop:
    """Rows sorted into one segment per adapter; each segment runs its own two products."""

    name = "segments"

    def prepare(self, layer: nn.Module, rows: list[str | None]) -> tuple[int, list[_Segment]] | None:
        rows = _rows_on_layer(layer, rows)
        names = sorted({n for n in rows if n is not None})
        if not names:
            return None
        device = layer.lora_A[names[0]].weight.device
        segments = []
        for n in names:
            index = torch.tensor([i for i, m in enumerate(rows) if m == n], device=device)
            b = layer.lora_B[n].weight * layer.scaling[n]
            segments.append(_Segment(index, layer.lora_A[n].weight, b))
        return len(rows), segments

    def apply(self, state: tuple[int, list[_Segment]], x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        n, segments = state
        x3, out3 = _as_rows(x, n), _as_rows(out, n)
        for seg in segments:
            xs = x3.index_select(0, seg.index).to(seg.a.dtype)
            update = (xs @ seg.a.t() @ seg.b.t()).to(out3.dtype)
            if torch.is_grad_enabled():
                out3 = out3.index_add(0, seg.index, update)
            else:
                out3.index_add_(0, seg.index, update)
        return out3.view(out.shape)


STRATEGIES: dict[str, MixedStrategy] = {"gather": GatherBmm(), "segments": SegmentLoop()}


def mixed_saved_forward(
    module: nn.Module, rows: list[str | None], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> torch.Tensor:
    """A ``ModulesToSave`` in a mixed forward: each row through its adapter's copy (or the original).

    The first positional argument carries the rows; rows are grouped by copy, so a batch with k
    distinct heads runs k head forwards. Every copy must give outputs of one shape.
    """
    x = args[0]
    if x.shape[0] != len(rows):
        raise ValueError(
            f"mixed-adapter forward: the head input has {x.shape[0]} rows, but {len(rows)} row "
            "adapters were given"
        )
    owned = [n if n in module.modules_to_save else None for n in rows]
    groups: dict[str | None, list[int]] = {}
    for i, n in enumerate(owned):
        groups.setdefault(n, []).append(i)

    def head(name: str | None) -> nn.Module:
        return module.original_module if name is None else module.modules_to_save[name]

    if len(groups) == 1:
        return head(owned[0])(*args, **kwargs)
    out: torch.Tensor | None = None
    for name, members in groups.items():
        index = torch.tensor(members, device=x.device)
        part = head(name)(x.index_select(0, index), *args[1:], **kwargs)
        if out is None:
            out = part.new_empty((len(rows), *part.shape[1:]))
        if part.shape[1:] != out.shape[1:]:
            raise ValueError(
                "mixed-adapter forward: the heads of the adapters in this batch give outputs of "
                f"different shapes ({tuple(out.shape[1:])} and {tuple(part.shape[1:])}); batch "
                "adapters with heads of one shape together"
            )
        out = out.index_copy(0, index, part) if torch.is_grad_enabled() else out.index_copy_(0, index, part)
    assert out is not None
    return out


class RowRouting:
    """One row assignment shared by every layer of a model during a mixed forward.

    Each layer's prepared state is cached here (by layer) while no gradient is recorded, so a
    decode loop that keeps its rows pays for the gathering once, not at every step.
    """

    def __init__(self, rows: list[str | None], strategy: MixedStrategy) -> None:
        self.rows = list(rows)
        self.strategy = strategy
        self._prepared: dict[int, Any] = {}

    def state_for(self, layer: nn.Module) -> Any:
        if torch.is_grad_enabled():  # a cached graph could not be backpropagated twice
            return self.strategy.prepare(layer, self.rows)
        key = id(layer)
        if key not in self._prepared:
            with torch.no_grad():
                self._prepared[key] = self.strategy.prepare(layer, self.rows)
        return self._prepared[key]

    def forget(self) -> None:
        self._prepared.clear()


def mixed_linear_forward(layer: nn.Module, routing: RowRouting, x: torch.Tensor) -> torch.Tensor:
    """``LoraLinear`` in a mixed forward: the base output plus each row's own update."""
    out = layer.base_output(x)
    state = routing.state_for(layer)
    return out if state is None else routing.strategy.apply(state, x, out)
