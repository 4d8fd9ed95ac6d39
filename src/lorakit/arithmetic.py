"""Adapter arithmetic: a new adapter from a weighted combination of existing ones.

Every method works per adapted Linear/Conv1D layer on the weighted update
sum_i w_i * s_i B_i A_i, and the new adapter has scaling 1 (alpha = its rank):

- ``cat``: A = [w_i s_i A_i] stacked, B = [B_i] side by side. Exact; ranks add.
- ``linear``: A = sum sign(w_i s_i) sqrt|w_i s_i| A_i, B = sum sqrt|w_i s_i| B_i (PEFT's
  definition). Needs equal ranks; it is not the weighted sum of the updates (cross terms).
- ``svd``: the best rank-k approximation (truncated SVD) of the weighted sum; the report
  gives its relative Frobenius error, which falls as k grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from lorakit.config import RESIDUAL_INITS, LoraConfig
from lorakit.errors import ConfigError, LorakitError
from lorakit.layers import LoraLinear
from lorakit.model import adapter_state, add_adapter, check_adapter_name, lora_layers

CombineMethod = Literal["linear", "cat", "svd"]
_METHODS = ("linear", "cat", "svd")


@dataclass
class CombineReport:
    """Ranks of the new adapter and, for ``svd``, how far it is from the exact weighted update."""

    method: CombineMethod
    ranks: dict[str, int] = field(default_factory=dict)
    module_errors: dict[str, float] = field(default_factory=dict)
    """svd only: ||D - D_k||_F / ||D||_F per module."""
    relative_error: float | None = None
    """svd only: the same over all modules together (0.0 for cat; None for linear)."""


def add_weighted_adapter(
    model: nn.Module,
    weights: dict[str, float],
    adapter_name: str,
    method: CombineMethod = "linear",
    svd_rank: int | None = None,
) -> CombineReport:
    """Add adapter ``adapter_name`` = weighted combination of ``weights`` ({adapter: weight}).

    The new adapter is inactive until ``set_adapter``. ``svd_rank`` (svd only) defaults to the
    largest rank among the inputs.
    """
    _validate(model, weights, adapter_name, method, svd_rank)
    names = list(weights)
    plans: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    report = CombineReport(method)
    err_sq = total_sq = 0.0
    for path, layer in _layers_with(model, names):
        present = [n for n in names if n in layer.adapter_names()]
        factors = [(weights[n] * layer.scaling[n], _ab(layer, n)) for n in present]
        if method == "cat":
            a = torch.cat([w * a for w, (a, _) in factors], dim=0)
            b = torch.cat([b for _, (_, b) in factors], dim=1)
        elif method == "linear":
            a, b = _linear(path, factors, len(present) == len(names))
        else:
            delta = sum(w * (b @ a) for w, (a, b) in factors)
            a, b, err, norm = _truncated_svd(delta, svd_rank or max(layer.r[n] for n in present))
            report.module_errors[path] = err / norm if norm > 0 else 0.0
            err_sq, total_sq = err_sq + err**2, total_sq + norm**2
        plans[path] = (a, b)
        report.ranks[path] = a.shape[0]
    if method == "svd":
        report.relative_error = math.sqrt(err_sq / total_sq) if total_sq > 0 else 0.0
    elif method == "cat":
        report.relative_error = 0.0
    _install(model, adapter_name, names[0], plans)
    return report


def _ab(layer: LoraLinear, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.lora_A[name].weight.detach().float(), layer.lora_B[name].weight.detach().float()


def _linear(
    path: str, factors: list[tuple[float, tuple[torch.Tensor, torch.Tensor]]], complete: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    ranks = {a.shape[0] for _, (a, _) in factors}
    if len(ranks) != 1 or not complete:
        raise LorakitError(
            f"method='linear' needs every adapter on every layer with the same rank; {path} has "
            f"ranks {sorted(ranks)} over {len(factors)} adapter(s). Use method='cat' or 'svd'."
        )
    a = sum(math.copysign(math.sqrt(abs(w)), w) * a for w, (a, _) in factors)
    b = sum(math.sqrt(abs(w)) * b for w, (_, b) in factors)
    return a, b


def _truncated_svd(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(A, B, ||D - B A||_F, ||D||_F) for the rank-``rank`` truncation of ``delta`` (out x in)."""
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(rank, s.numel())
    a, b = vh[:k], u[:, :k] * s[:k]
    err = float(torch.linalg.norm(s[k:]))
    return a.contiguous(), b.contiguous(), err, float(torch.linalg.norm(s))


def _layers_with(model: nn.Module, names: list[str]) -> list[tuple[str, LoraLinear]]:
    out = []
    for path, layer in lora_layers(model):
        if not any(n in layer.adapter_names() for n in names):
            continue
        if not isinstance(layer, LoraLinear):
            raise LorakitError(
                f"add_weighted_adapter supports Linear/Conv1D layers only; {path} is a {type(layer).__name__}"
            )
        out.append((path, layer))
    return out


def _validate(
    model: nn.Module, weights: dict[str, float], adapter_name: str, method: str, svd_rank: int | None
) -> None:
    state = adapter_state(model)
    check_adapter_name(adapter_name)
    if adapter_name in state.configs:
        raise ConfigError(f"adapter {adapter_name!r} already exists on this model")
    if method not in _METHODS:
        raise ConfigError(f"method = {method!r} is invalid: expected one of {_METHODS}")
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"weights = {weights!r} is invalid: expected a non-empty {{adapter: weight}} dict")
    for name, w in weights.items():
        if name not in state.configs:
            raise ConfigError(f"weights: no adapter named {name!r}; this model has {list(state.configs)}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w):
            raise ConfigError(f"weights[{name!r}] = {w!r} is invalid: expected a finite number")
        cfg = state.configs[name]
        if cfg.use_dora or cfg.init in RESIDUAL_INITS:
            raise ConfigError(
                f"adapter {name!r} uses DoRA or init={cfg.init!r}; only plain LoRA adapters can be combined"
            )
    if svd_rank is not None and (method != "svd" or not isinstance(svd_rank, int) or svd_rank < 1):
        raise ConfigError(f"svd_rank = {svd_rank!r} is invalid: expected an integer >= 1 with method='svd'")


def _install(
    model: nn.Module, adapter_name: str, template: str, plans: dict[str, tuple[torch.Tensor, torch.Tensor]]
) -> None:
    first = adapter_state(model).configs[template]
    ranks = {path: a.shape[0] for path, (a, _) in plans.items()}
    r = next(iter(ranks.values()))
    cfg = LoraConfig(
        r=r,
        alpha=float(r),
        dropout=first.dropout,
        targets=sorted(plans),
        rank_pattern=dict(ranks),
        alpha_pattern={p: float(k) for p, k in ranks.items()},
    )
    add_adapter(model, adapter_name, cfg)
    layers = dict(lora_layers(model))
    with torch.no_grad():
        for path, (a, b) in plans.items():
            layers[path].lora_A[adapter_name].weight.copy_(a)
            layers[path].lora_B[adapter_name].weight.copy_(b)
