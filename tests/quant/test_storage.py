"""NF4 and int8 storage: errors match what the codebooks predict, bytes stay within budget."""

from __future__ import annotations

import math

import pytest
import torch

from lorakit.quant import NF4_CODEBOOK, Int8Storage, NF4Storage

BLOCK = 64


def expected_nf4_mse(block: int = BLOCK, levels: torch.Tensor = NF4_CODEBOOK) -> float:
    """E[(w - Q(w))^2] for w ~ N(0, 1) stored in NF4 blocks of ``block`` values.

    A block is divided by its absmax M; the element at the max maps to +-1 exactly (no error),
    the other block-1 values are N(0, 1) conditioned on |z| < M. So, with e(x) the squared
    distance from x to the nearest NF4 level,
    MSE = (block-1)/block * E_M[ M^2 * E[e(z/M) | |z| < M] ],  P(M <= m) = (2 Phi(m) - 1)^block.
    Both expectations are integrated numerically.
    """
    levels = levels.double()
    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    e = (x[:, None] - levels[None, :]).abs().min(dim=1).values ** 2
    m = torch.linspace(0.5, 6.5, 1000, dtype=torch.float64)
    phi = lambda t: torch.exp(-(t**2) / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    mass = torch.erf(m / math.sqrt(2))  # 2 Phi(m) - 1
    density = block * 2 * phi(m) * mass ** (block - 1)
    inner = torch.trapezoid(e[None, :] * phi(m[:, None] * x[None, :]) * m[:, None], x, dim=1) / mass
    return (block - 1) / block * float(torch.trapezoid(density * m**2 * inner, m))


def _gaussian(sigma: float = 0.02, rows: int = 512, cols: int = 1024) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(0)) * sigma


def test_expected_error_integral_is_sane() -> None:
    nf4 = expected_nf4_mse()
    uniform = expected_nf4_mse(levels=torch.linspace(-1, 1, 16))
    # With M ~ 2.5, uniform 16-level rounding gives about (2M/15)^2/12 ~ 9e-3; NF4 is built to beat it.
    assert uniform == pytest.approx((2 * 2.5 / 15) ** 2 / 12, rel=0.2)
    assert 0.8 * uniform < nf4 < uniform


def test_nf4_error_matches_the_codebook_expectation() -> None:
    sigma = 0.02
    w = _gaussian(sigma)
    mse = float(((NF4Storage(w, BLOCK).dequantize() - w) ** 2).mean())
    expected = sigma**2 * expected_nf4_mse()
    assert mse == pytest.approx(expected, rel=0.03)


def test_double_quantization_costs_little_error() -> None:
    sigma = 0.02
    w = _gaussian(sigma)
    mse = float(((NF4Storage(w, BLOCK, double_quant=True).dequantize() - w) ** 2).mean())
    expected = sigma**2 * expected_nf4_mse()
    assert expected * 0.97 < mse < expected * 1.05


def test_nf4_exact_on_codebook_values_and_handles_padding_and_zeros() -> None:
    levels = NF4_CODEBOOK.repeat(5)[:67] * 3.0  # 67 values: last block padded
    levels[:16] = NF4_CODEBOOK * 3.0  # block absmax is exactly 3
    w = torch.cat([levels, torch.zeros(64)]).view(1, -1)
    out = NF4Storage(w, BLOCK).dequantize()
    assert out.shape == w.shape
    torch.testing.assert_close(out[:, :64], w[:, :64])
    assert torch.equal(out[:, -64:], torch.zeros(1, 64))


def test_int8_error_is_rounding_noise() -> None:
    w = _gaussian()
    storage = Int8Storage(w)
    mse = float(((storage.dequantize() - w) ** 2).mean())
    step = w.abs().amax(dim=1) / 127
    assert mse == pytest.approx(float((step**2).mean() / 12), rel=0.05)


@pytest.mark.parametrize("double_quant", [False, True])
def test_nf4_bytes_are_at_most_016_of_float32(double_quant: bool) -> None:
    w = _gaussian(rows=256, cols=576)
    storage = NF4Storage(w, BLOCK, double_quant)
    measured = sum(b.untyped_storage().nbytes() for b in storage.buffers())
    assert measured == storage.nbytes()
    assert measured / (w.numel() * 4) <= 0.16


def test_dequantize_in_other_dtypes() -> None:
    w = _gaussian(rows=8, cols=128)
    storage = NF4Storage(w, BLOCK)
    half = storage.dequantize(torch.bfloat16)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), storage.dequantize(), atol=1e-3, rtol=1e-2)
