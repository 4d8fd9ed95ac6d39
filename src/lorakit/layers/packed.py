"""Frozen weights kept in oneDNN's blocked layout, for the products of inference.

A decode step multiplies a few rows by every weight of the model, so it streams the whole model
from memory once per token. torch's GEMM (MKL) reads each weight in its plain row-major layout;
oneDNN can reorder a weight once into its own blocked layout
(``torch.ops.mkldnn._reorder_linear_weight``) and multiply by that copy
(``torch.ops.mkldnn._linear_pointwise``). On the benchmark machine this made SmolLM2-135M's
16-row greedy decode with 16 mixed adapters 1.23x faster end to end (``serve_generate``,
``mixed-unpacked`` row; BENCHMARKS.md, "Serving").

The costs, and why it is opt-in (``LoraLinear.packed_base``, ``FrozenLinear.packed``; set by
``lorakit.fast_modules.prepare_for_serving`` and ``lorakit serve``):

- memory: one more copy of every packed weight (SmolLM2-135M: about 540 MB);
- float32 results equal torch's up to summation order (last bits), as with ``MatmulBackend.ONEDNN``;
- only while no gradient is recorded (the packed copy has no autograd), on CPU float32, for
  weights of at least ``MIN_WEIGHT`` elements, at any row count (a decode step reads each weight
  from memory; a product on a weight already in cache can be slower than MKL's at 1 row: an
  isolated, cache-hot product on SmolLM2's shapes ran 0.56-0.92x at 1 row and 0.95-1.83x at 2-4
  rows, 2026-12-04); under
  ``MatmulBackend.TORCH`` never, so that setting stays bit-identical to nn.Linear.

The copy is rebuilt whenever the weight changes (a merge writes it in place: its ``_version``
moves), so it can never be stale. Both private operators are probed once on a tiny product;
when either is missing or disagrees with ``torch.addmm``, lorakit warns once and keeps torch's GEMM.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
from torch import nn

from lorakit.layers import gemm

Reorder = Callable[..., torch.Tensor]
MIN_WEIGHT = 1 << 16
"""Weights with fewer elements stay on torch's GEMM: they fit in cache, where oneDNN's per-call
cost is not repaid (SmolLM2's smallest projection, 192 x 576, has 110,592)."""
ROW_HINT = 16
"""The row count oneDNN's reorder is told to expect: a decode batch (the layout chosen for it ran
1 to 608 rows as fast as one chosen for each, measured on SmolLM2's shapes)."""


@functools.cache
def _reorder_op() -> Reorder | None:
    """oneDNN's weight reorder after a successful probe, else None (with one warning)."""
    linear = gemm.onednn_linear_op()
    if linear is None:
        return None
    try:
        op = torch.ops.mkldnn._reorder_linear_weight.default
    except (AttributeError, RuntimeError):
        return _refuse("torch.ops.mkldnn._reorder_linear_weight is missing in this torch build")
    problem = probe_reorder(op, linear)
    return op if problem is None else _refuse(f"the packed-weight product failed its probe ({problem})")


def _refuse(why: str) -> None:
    warnings.warn(
        f"lorakit: {why}; packed weights are off, torch's GEMM is used", RuntimeWarning, stacklevel=4
    )
    return None


def probe_reorder(op: Reorder, linear: Callable[..., torch.Tensor]) -> str | None:
    """Why ``op`` cannot pack weights for ``linear``; None when a tiny packed product with a bias
    matches ``torch.addmm`` (catches a renamed or re-purposed private operator)."""
    a = torch.linspace(-1.0, 1.0, 6 * 5).reshape(6, 5)
    w = torch.linspace(0.5, -0.7, 4 * 5).reshape(4, 5)
    bias = torch.tensor([0.25, -0.5, 1.0, 0.0])
    try:
        out = linear(a, op(w, ROW_HINT), bias, "none", [], "")
    except Exception as e:  # any failure means: do not use it
        return f"it raised {type(e).__name__}: {e}"
    expected = torch.addmm(bias, a, w.t())
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        return (
            f"it returned {type(out).__name__} {getattr(out, 'shape', '')}, expected {tuple(expected.shape)}"
        )
    if not torch.allclose(out, expected, atol=1e-5, rtol=1e-5):
        return f"its result differs from torch.addmm by {float((out - expected).abs().max()):.3g}"
    return None


def reset_reorder_probe() -> None:
    """Forget the probe's verdict (tests; a changed torch.ops)."""
    _reorder_op.cache_clear()


class PackedWeight:
    """The packed copy of one weight, rebuilt when the weight's storage or contents change."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._packed: torch.Tensor | None = None

    def of(self, weight: torch.Tensor, op: Reorder) -> torch.Tensor:
        key = (weight.data_ptr(), weight._version, tuple(weight.shape), weight.dtype)
        if key != self._key or self._packed is None:
            with torch.no_grad():
                self._packed = op(weight.detach(), ROW_HINT)
            self._key = key
        return self._packed

    def drop(self) -> None:
        self._key = self._packed = None

    def __deepcopy__(self, memo: dict) -> PackedWeight:
        return PackedWeight()  # a copy of a model packs its own weights on first use

    def __getstate__(self) -> dict:
        return {"_key": None, "_packed": None}  # oneDNN's opaque tensors are not picklable

    @property
    def nbytes(self) -> int:
        """Bytes the packed copy holds (0 before the first packed product)."""
        if self._packed is None:
            return 0
        return self._packed.numel() * self._packed.element_size()


def prepack(base: nn.Module, cache: PackedWeight) -> bool:
    """Make the packed copy of ``base``'s weight now, if it can ever be used (a plain CPU float32
    ``nn.Linear`` and a working operator): a server then holds its memory from start-up, and no
    request pays for packing. Returns whether it did."""
    w = base.weight if type(base) is nn.Linear else None
    if w is None or w.device.type != "cpu" or w.dtype != torch.float32 or w.numel() < MIN_WEIGHT:
        return False
    op = _reorder_op()
    if op is None:
        return False
    cache.of(base.weight, op)
    return True


def packs(base: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``base(x)`` may run as a packed product: a plain ``nn.Linear`` with no gradient
    recorded, no hooks, no autocast, CPU float32, a large enough weight, not under TORCH."""
    if torch.is_grad_enabled() or type(base) is not nn.Linear:
        return False
    w = base.weight
    if x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32 or x.dim() < 2:
        return False
    if base._forward_hooks or base._forward_pre_hooks or torch.is_autocast_enabled("cpu"):
        return False
    if gemm.get_matmul_backend() is gemm.MatmulBackend.TORCH or not torch.backends.mkldnn.enabled:
        return False
    return w.numel() >= MIN_WEIGHT and x.numel() > 0 and _reorder_op() is not None


def packed_product(base: nn.Linear, cache: PackedWeight, x: torch.Tensor) -> torch.Tensor:
    """``base(x)`` from the packed copy of its weight (call only where :func:`packs` holds)."""
    op, linear = _reorder_op(), gemm.onednn_linear_op()
    assert op is not None and linear is not None
    flat = x.reshape(-1, x.shape[-1])
    out = linear(flat.contiguous(), cache.of(base.weight, op), base.bias, "none", [], "")
    return out.reshape(*x.shape[:-1], out.shape[-1])


def base_product(base: nn.Module, cache: PackedWeight | None, x: torch.Tensor) -> torch.Tensor:
    """``base(x)``, packed when ``cache`` is given and :func:`packs` allows it."""
    if cache is not None and packs(base, x):
        return packed_product(base, cache, x)
    return base(x)
