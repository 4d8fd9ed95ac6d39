"""chunked_cross_entropy equals cross-entropy of the full logits, values and gradients, on both
GEMM libraries, and never creates a tensor the size of the full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from lorakit.layers import gemm
from lorakit.layers.chunked_loss import chunked_cross_entropy

Backend = gemm.MatmulBackend
BACKENDS = [Backend.TORCH] + ([Backend.ONEDNN] if gemm.onednn_available() else [])
ROWS, FEATURES, VOCAB = 60, 16, 301


def _inputs(ignore_every: int | None = 3, bias: bool = True, weight_grad: bool = False):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(ROWS, FEATURES, generator=g).requires_grad_(True)
    weight = (torch.randn(VOCAB, FEATURES, generator=g) / 4).requires_grad_(weight_grad)
    b = (torch.randn(VOCAB, generator=g) / 4).requires_grad_(weight_grad) if bias else None
    targets = torch.randint(0, VOCAB, (ROWS,), generator=g)
    if ignore_every:
        targets[::ignore_every] = -100
    return hidden, weight, b, targets


def _loss_and_grads(loss_fn, hidden, weight, bias, targets, scale: float = 3.0):
    loss = loss_fn(hidden, weight, bias, targets)
    wrt = [t for t in (hidden, weight, bias) if t is not None and t.requires_grad]
    return loss.detach(), torch.autograd.grad(loss * scale, wrt)


def _plain(hidden, weight, bias, targets):
    return F.cross_entropy(F.linear(hidden, weight, bias), targets, ignore_index=-100)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.value)
@pytest.mark.parametrize("chunk", [1, 7, 64, None], ids=lambda c: f"chunk{c}")
@pytest.mark.parametrize("case", ["ignored-rows", "all-rows", "no-bias", "trained-head"], ids=lambda c: c)
def test_same_loss_and_gradients_as_full_logits(backend: Backend, chunk: int | None, case: str) -> None:
    hidden, weight, bias, targets = _inputs(
        ignore_every=None if case == "all-rows" else 3,
        bias=case != "no-bias",
        weight_grad=case == "trained-head",
    )
    with gemm.matmul_backend(backend):
        ref_loss, ref_grads = _loss_and_grads(_plain, hidden, weight, bias, targets)
        loss, grads = _loss_and_grads(
            lambda *a: chunked_cross_entropy(*a, chunk_rows=chunk), hidden, weight, bias, targets
        )
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    assert len(grads) == len(ref_grads) == (3 if case == "trained-head" else 1)
    for got, ref in zip(grads, ref_grads, strict=True):
        assert got.shape == ref.shape and got.dtype == ref.dtype
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    if case != "all-rows":  # ignored rows get exactly zero gradient
        assert not grads[0][::3].any() and grads[0][1::3].any()


def test_every_row_ignored_gives_nan_like_cross_entropy() -> None:
    hidden, weight, bias, targets = _inputs()
    targets[:] = -100
    loss = chunked_cross_entropy(hidden, weight, bias, targets)
    assert torch.isnan(loss) and torch.isnan(_plain(hidden, weight, bias, targets))
    (grad,) = torch.autograd.grad(loss, hidden)
    assert not grad.any()


def test_without_gradients_only_the_loss_is_computed() -> None:
    hidden, weight, bias, targets = _inputs()
    with torch.no_grad():
        loss = chunked_cross_entropy(hidden, weight, bias, targets, chunk_rows=8)
    assert loss.grad_fn is None
    torch.testing.assert_close(loss, _plain(hidden, weight, bias, targets).detach(), atol=1e-5, rtol=1e-5)


class _LargestTensor(TorchDispatchMode):
    """Records the element count of every tensor any operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_full_logits_and_their_gradient_never_exist() -> None:
    hidden, weight, bias, targets = _inputs(ignore_every=None)
    with _LargestTensor() as plain:
        _plain(hidden, weight, bias, targets).backward()
    hidden.grad = None
    with _LargestTensor() as chunked:
        chunked_cross_entropy(hidden, weight, bias, targets, chunk_rows=20).backward()
    assert plain.largest == ROWS * VOCAB
    assert chunked.largest == 20 * VOCAB  # one chunk of logits at a time (> the weight's size)


def test_bad_shapes_are_refused() -> None:
    hidden, weight, bias, targets = _inputs()
    with pytest.raises(ValueError, match="rows"):
        chunked_cross_entropy(hidden[None], weight, bias, targets)
    with pytest.raises(ValueError, match="rows"):
        chunked_cross_entropy(hidden, weight, bias, targets[:-1])
