"""Per-row adapters in one forward pass: row i of the batch runs adapter ``rows[i]`` (or none).

A LoRA layer inside a mixed forward computes, for every row ``i`` with adapter ``n = rows[i]``,

    h_i = W0 x_i + scaling_n * B_n A_n x_i          (h_i = W0 x_i for a row with no adapter)

Two strategies compute this; both are small objects with ``prepare`` (once per row assignment,
cached while the assignment holds) and ``apply`` (every forward):

* ``GatherBmm`` (the default): the rows' A and B are gathered into per-row stacks, zero-padded
  to the largest rank in the batch, with the scaling folded into B; a row with no adapter gets
  zeros. The update is then two batched products for the whole batch, ``bmm(x, A_rows)`` and
  ``baddbmm(out, ., B_rows)``, whatever the number of adapters. Outside autograd each layer keeps
  the adapters it has served stacked (mixed_stack.py), so a new row assignment (a request joins
  or leaves) is one ``index_select`` per stack, not a copy per adapter; one that replaces another
  re-gathers only the rows whose adapter changed, into the replaced one's buffers.
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

from lorakit.layers.mixed_stack import Gathered, PrepareContext, stack_of


class MixedStrategy(Protocol):
    """How a LoRA layer applies one adapter per row."""

    name: str

    def prepare(self, layer: nn.Module, rows: list[str | None], ctx: PrepareContext | None = None) -> Any:
        """Whatever ``apply`` needs for this row assignment, or None when no row adapts this layer."""
        ...

    def apply(self, state: Any, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` (the base output) plus each row's update; ``x`` and ``out`` are (rows, ..., features)."""
        ...


def _rows_on_layer(layer: nn.Module, rows: list[str | None]) -> list[str | None]:
    """Each row's adapter if this layer has it, else None (the row runs the base here)."""
    present = layer._modules["lora_A"]._modules  # a dict: no nn.Module look-up per layer and batch
    return [n if n in present else None for n in rows]


def _as_rows(t: torch.Tensor, n_rows: int) -> torch.Tensor:
    """View (rows, ..., f) as (rows, tokens, f); a 2-D (rows, f) input is one token per row."""
    if t.shape[0] != n_rows:
        raise ValueError(
            f"mixed-adapter forward: the input has {t.shape[0]} rows in its first dimension, "
            f"but {n_rows} row adapters were given"
        )
    return t.reshape(n_rows, -1, t.shape[-1])


class GatherBmm:
    """Per-row stacks of A and B (padded to the largest rank) and two batched products."""

    name = "gather"

    def prepare(
        self, layer: nn.Module, rows: list[str | None], ctx: PrepareContext | None = None
    ) -> Gathered | None:
        rows = _rows_on_layer(layer, rows)
        names = sorted({n for n in rows if n is not None})
        if not names:
            return None
        if not torch.is_grad_enabled():
            return stack_of(layer).rows(layer, names, rows, ctx)
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
        return Gathered(a_table.index_select(0, index), b_table.index_select(0, index))

    def apply(self, state: Gathered, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
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

    def prepare(
        self, layer: nn.Module, rows: list[str | None], ctx: PrepareContext | None = None
    ) -> tuple[int, list[_Segment]] | None:
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
        self._ctx = PrepareContext()

    def state_for(self, layer: nn.Module) -> Any:
        if torch.is_grad_enabled():  # a cached graph could not be backpropagated twice
            return self.strategy.prepare(layer, self.rows)
        key = id(layer)
        if key not in self._prepared:
            with torch.no_grad():
                self._prepared[key] = self.strategy.prepare(layer, self.rows, self._ctx)
        return self._prepared[key]

    def forget(self) -> None:
        self._prepared.clear()
        self._ctx = PrepareContext()

    def take_buffers(self, old: RowRouting) -> None:
        """Reuse the buffers of ``old``, a row assignment this one replaces; ``old`` prepares
        afresh if it is used again."""
        if old is self or old.strategy is not self.strategy:
            return
        self._ctx.spare.update(old._prepared)
        old.forget()


def mixed_linear_forward(layer: nn.Module, routing: RowRouting, x: torch.Tensor) -> torch.Tensor:
    """``LoraLinear`` in a mixed forward: the base output plus each row's own update."""
    out = layer.base_output(x)
    state = routing.state_for(layer)
    return out if state is None else routing.strategy.apply(state, x, out)
