"""The matrix products of the fused LoRA path, and which CPU kernel library computes them.

torch computes a float32 CPU matmul with MKL's sgemm. oneDNN, also inside every x86 torch build,
has its own float32 GEMM; on the benchmark machine (AMD EPYC, AVX-512) it runs the shapes of a
LoRA step 2.2-2.4x faster than MKL (BENCHMARKS.md). Both are true float32 GEMMs, full-precision
products and float32 accumulation (no bf16/tf32 shortcut); they differ only in summation order,
so in the last bits (measured on 2048-row products with inner sizes 384 and 1536: max abs error
from a float64 reference 5.9e-6, MKL's 2.7e-6, for outputs of order 1).

``MatmulBackend`` says which library the fused path uses; it is a process-wide setting, like
``torch.backends`` flags, changed with :func:`set_matmul_backend` or the :func:`matmul_backend`
context manager. ``TORCH`` makes a fresh adapter's output bit-identical to its base layer's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class MatmulBackend(enum.Enum):
    """Which kernel library computes the fused path's float32 CPU products."""

    AUTO = "auto"
    """oneDNN for float32 CPU products of at least ``MIN_WORK`` multiply-adds, torch's otherwise."""
    TORCH = "torch"
    """Always ``torch.mm`` / ``torch.addmm``: exactly what ``nn.Linear`` computes, bit for bit."""
    ONEDNN = "onednn"
    """oneDNN for every float32 CPU product it supports, whatever its size."""


MIN_WORK = 1 << 21
"""Below this many multiply-adds oneDNN's per-call overhead outweighs its faster kernel (measured:
1 x 576 x 576 is 1.4x slower than MKL, 16 x 384 x 384 1.3x faster)."""

_backend = MatmulBackend.AUTO


def _onednn_linear_op() -> object | None:
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_LINEAR = _onednn_linear_op()


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's linear kernel (x86 and most arm64 builds do)."""
    return _ONEDNN_LINEAR is not None


def get_matmul_backend() -> MatmulBackend:
    return _backend


def set_matmul_backend(backend: MatmulBackend) -> MatmulBackend:
    """Select the backend for every later call; returns the previous one."""
    global _backend
    if not isinstance(backend, MatmulBackend):
        raise TypeError(f"backend must be a lorakit.MatmulBackend, got {backend!r}")
    previous, _backend = _backend, backend
    return previous


@contextmanager
def matmul_backend(backend: MatmulBackend) -> Iterator[None]:
    """Use ``backend`` inside the ``with`` block, then restore the previous one."""
    previous = set_matmul_backend(backend)
    try:
        yield
    finally:
        set_matmul_backend(previous)


def uses_onednn(a: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether ``linear(a, w)`` runs on oneDNN under the current backend."""
    if _backend is MatmulBackend.TORCH or _ONEDNN_LINEAR is None or not torch.backends.mkldnn.enabled:
        return False
    if a.device.type != "cpu" or a.dtype != torch.float32 or w.dtype != torch.float32:
        return False
    if a.numel() == 0 or w.numel() == 0:
        return False
    return _backend is MatmulBackend.ONEDNN or a.shape[0] * a.shape[1] * w.shape[0] >= MIN_WORK


def linear(a: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ w.T + bias`` for 2-D ``a`` (rows x in) and ``w`` (out x in); a new tensor."""
    if uses_onednn(a, w) and (bias is None or bias.dtype == torch.float32):
        return _ONEDNN_LINEAR(a, w, bias, "none", [], "")
    w_t = w.t()
    return torch.mm(a, w_t) if bias is None else torch.addmm(bias, a, w_t)


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D tensors; a new tensor."""
    return linear(a, b.t())
