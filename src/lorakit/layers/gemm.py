"""The matrix products of lorakit's fast paths, and which CPU kernel library computes each.

torch computes a float32 CPU matmul with MKL's sgemm. oneDNN, also inside every x86 torch build,
has its own float32 GEMM; on the benchmark machine (AMD EPYC, AVX-512) it runs the shapes of a
LoRA step 2.2-2.4x faster than MKL (BENCHMARKS.md), on an Intel CPU the two are about equal. Both
are true float32 GEMMs, full-precision products and float32 accumulation (no bf16/tf32
shortcut); they differ only in summation order, so in the last bits (measured on 2048-row
products with inner sizes 384 and 1536: max abs error from a float64 reference 5.9e-6, MKL's
2.7e-6, for outputs of order 1).

``MatmulBackend`` says which library the fast paths use:

- ``AUTO`` (default) measures both libraries once per product shape at first use and keeps the
  faster one for that shape (like ``torch.backends.cudnn.benchmark``): oneDNN is taken only when
  it is at least ``AUTO_MARGIN`` faster, so a CPU where MKL is as fast loses nothing. Products
  under ``MIN_WORK`` multiply-adds always stay on torch's GEMM.
- ``TORCH``: always ``torch.mm`` / ``torch.addmm``, bit-identical to ``nn.Linear``.
- ``ONEDNN``: oneDNN for every float32 CPU product.

The choice is *scoped*: a ``contextvars.ContextVar`` read by every product, changed for a block
with the :func:`matmul_backend` context manager (what ``lorakit train`` does for its run), so a
library call never changes another thread's or another caller's setting. The fast-path autograd
nodes record the backend of their forward, so a ``backward()`` run outside the block uses it too.

oneDNN's linear kernel is reached through ``torch.ops.mkldnn._linear_pointwise``, an operator
private to torch. Before its first use it is probed once on a tiny product compared with
``torch.mm``; when it is missing, raises or disagrees, lorakit warns once and uses torch's GEMM.
"""

from __future__ import annotations

import contextvars
import enum
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


class MatmulBackend(enum.Enum):
    """Which kernel library computes the fast paths' float32 CPU products."""

    AUTO = "auto"
    """Per product shape, whichever of oneDNN and torch measured faster at first use (products of
    at least ``MIN_WORK`` multiply-adds; smaller ones stay on torch's GEMM)."""
    TORCH = "torch"
    """Always ``torch.mm`` / ``torch.addmm``: exactly what ``nn.Linear`` computes, bit for bit."""
    ONEDNN = "onednn"
    """oneDNN for every float32 CPU product it supports, whatever its size."""


MIN_WORK = 1 << 21
"""Below this many multiply-adds AUTO never measures and keeps torch's GEMM: oneDNN's per-call
overhead outweighs its faster kernel there (measured: 1 x 576 x 576 is 1.4x slower than MKL)."""
AUTO_MARGIN = 0.10
"""AUTO takes oneDNN for a shape only when it measured at least this much faster than torch."""
AUTO_REPEATS = 5
"""Interleaved timings of each library per shape; the minimum of each is compared."""

_BACKEND: contextvars.ContextVar[MatmulBackend] = contextvars.ContextVar(
    "lorakit_matmul_backend", default=MatmulBackend.AUTO
)
_CHOICES: dict[tuple[object, ...], bool] = {}
"""AUTO's measured choice per product shape key: True = oneDNN."""

OnednnLinear = Callable[..., torch.Tensor]


# -- the private oneDNN operator: found and probed once ------------------------------------------
def _find_onednn_op() -> OnednnLinear | None:
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


def probe_onednn_op(op: OnednnLinear) -> str | None:
    """Why ``op`` cannot serve as oneDNN's ``linear(a, w, bias)``; None when it can.

    A tiny product with a bias, compared with ``torch.addmm``: catches a renamed signature, a
    changed argument order or a different meaning of the operator in a future torch."""
    a = torch.linspace(-1.0, 1.0, 6 * 5).reshape(6, 5)
    w = torch.linspace(0.5, -0.7, 4 * 5).reshape(4, 5)
    bias = torch.tensor([0.25, -0.5, 1.0, 0.0])
    try:
        out = op(a, w, bias, "none", [], "")
    except Exception as e:  # any failure means: do not use it
        return f"it raised {type(e).__name__}: {e}"
    expected = torch.addmm(bias, a, w.t())
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape or out.dtype != expected.dtype:
        return (
            f"it returned {type(out).__name__} {getattr(out, 'shape', '')}, expected {tuple(expected.shape)}"
        )
    if not torch.allclose(out, expected, atol=1e-5, rtol=1e-5):
        return f"its result differs from torch.addmm by {float((out - expected).abs().max()):.3g}"
    return None


@functools.cache
def _onednn_op() -> OnednnLinear | None:
    """oneDNN's linear operator after a successful probe, else None (with one warning)."""
    op = _find_onednn_op()
    if op is None:
        if torch.backends.mkldnn.is_available():
            warnings.warn(
                "lorakit: torch.ops.mkldnn._linear_pointwise is missing in this torch build; "
                "the fast paths use torch's own GEMM",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    problem = probe_onednn_op(op)
    if problem is not None:
        warnings.warn(
            f"lorakit: torch.ops.mkldnn._linear_pointwise failed its probe ({problem}); "
            "the fast paths use torch's own GEMM",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return op


def reset_onednn_probe() -> None:
    """Forget the probe's verdict and AUTO's measurements (tests; a changed torch.ops)."""
    _onednn_op.cache_clear()
    _CHOICES.clear()


def onednn_linear_op() -> OnednnLinear | None:
    """oneDNN's linear operator (``a, w, bias, "none", [], ""``) after its probe, else None."""
    return _onednn_op()


def onednn_available() -> bool:
    """Whether this torch build has a working oneDNN linear kernel (probed once)."""
    return _onednn_op() is not None


# -- the scoped setting -------------------------------------------------------------------------
def get_matmul_backend() -> MatmulBackend:
    """The backend in force in the current context (thread / task)."""
    return _BACKEND.get()


def set_matmul_backend(backend: MatmulBackend) -> MatmulBackend:
    """Set the backend of the current context (thread / task) for every later call; returns the
    previous one. Other threads keep theirs; prefer :func:`matmul_backend` for a scoped change."""
    _check(backend)
    previous = _BACKEND.get()
    _BACKEND.set(backend)
    return previous


@contextmanager
def matmul_backend(backend: MatmulBackend) -> Iterator[None]:
    """Use ``backend`` inside the ``with`` block (this context only), then restore the previous one."""
    _check(backend)
    token = _BACKEND.set(backend)
    try:
        yield
    finally:
        _BACKEND.reset(token)


def _check(backend: object) -> None:
    if not isinstance(backend, MatmulBackend):
        raise TypeError(f"backend must be a lorakit.MatmulBackend, got {backend!r}")


# -- AUTO: measure once per shape ---------------------------------------------------------------
def _rows_bucket(rows: int) -> int:
    """Row counts up to the next power of two share a measurement (batches vary in length)."""
    return 1 << max(0, math.ceil(math.log2(max(rows, 1))))


def shape_key(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> tuple[object, ...]:
    """What AUTO's choice depends on: sizes, operand layouts, bias, thread count."""
    return (
        _rows_bucket(a.shape[0]),
        a.shape[1],
        w.shape[0],
        a.stride(1) == 1,
        w.stride(1) == 1,
        bias is not None,
        torch.get_num_threads(),
    )


def _torch_linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    w_t = w.t()
    return torch.mm(a, w_t) if bias is None else torch.addmm(bias, a, w_t)


def _onednn_linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    op = _onednn_op()
    assert op is not None
    return op(a, w, bias, "none", [], "")


def measure(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> tuple[float, float]:
    """(torch, oneDNN) process CPU seconds of ``linear(a, w, bias)``: the minimum of
    ``AUTO_REPEATS`` interleaved runs each (the first oneDNN call also builds its primitive).

    CPU time of the process (all its threads), not wall time: other processes' load inflates
    wall time at random (measured under a load average of 9 on 2 cores: wall ratios of the same
    shape from 0.07 to 5.6, CPU-time ratios within +-0.1). Both libraries spread a product of at
    least ``MIN_WORK`` over all of torch's threads, so CPU time ranks them as wall time would."""
    best = [math.inf, math.inf]
    for _ in range(AUTO_REPEATS):
        for i, fn in enumerate((_torch_linear, _onednn_linear)):
            t0 = time.process_time()
            fn(a, w, bias)
            best[i] = min(best[i], time.process_time() - t0)
    return best[0], best[1]


def autotune_choices() -> dict[tuple[object, ...], str]:
    """AUTO's decisions so far: {shape key: "onednn" | "torch"} (see :func:`shape_key`)."""
    return {k: "onednn" if v else "torch" for k, v in _CHOICES.items()}


def _auto_prefers_onednn(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> bool:
    if a.shape[0] * a.shape[1] * w.shape[0] < MIN_WORK:
        return False
    key = shape_key(a, w, bias)
    choice = _CHOICES.get(key)
    if choice is None:
        t_torch, t_onednn = measure(a, w, bias)
        choice = _CHOICES[key] = t_onednn < (1.0 - AUTO_MARGIN) * t_torch
    return choice


# -- the products -------------------------------------------------------------------------------
def uses_onednn(
    a: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None = None,
    backend: MatmulBackend | None = None,
) -> bool:
    """Whether ``linear(a, w, bias)`` runs on oneDNN under ``backend`` (default: the current one).

    Under AUTO this may measure the shape (once)."""
    backend = backend or _BACKEND.get()
    if backend is MatmulBackend.TORCH or not torch.backends.mkldnn.enabled:
        return False
    if a.device.type != "cpu" or a.dtype != torch.float32 or w.dtype != torch.float32:
        return False
    if bias is not None and bias.dtype != torch.float32:
        return False
    if a.numel() == 0 or w.numel() == 0 or _onednn_op() is None:
        return False
    return backend is MatmulBackend.ONEDNN or _auto_prefers_onednn(a, w, bias)


def linear(
    a: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor | None = None,
    backend: MatmulBackend | None = None,
) -> torch.Tensor:
    """``a @ w.T + bias`` for 2-D ``a`` (rows x in) and ``w`` (out x in); a new tensor.

    ``backend`` overrides the current context's setting (autograd nodes pass their forward's)."""
    if uses_onednn(a, w, bias, backend):
        return _onednn_linear(a, w, bias)
    return _torch_linear(a, w, bias)


def mm(a: torch.Tensor, b: torch.Tensor, backend: MatmulBackend | None = None) -> torch.Tensor:
    """``a @ b`` for 2-D tensors; a new tensor."""
    return linear(a, b.t(), backend=backend)
