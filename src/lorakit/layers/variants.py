"""Setting up and tearing down the variant state of an adapter on a ``LoraLinear``.

The variant is chosen once, from typed ``LoraConfig`` fields, when the adapter is added;
forward passes only look up the objects created here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from lorakit.config import RESIDUAL_INITS, LoraConfig
from lorakit.errors import TargetError
from lorakit.layers.dense import is_linear_like, linear_features
from lorakit.layers.dora import DoraMagnitude
from lorakit.layers.residual import RESIDUAL_STRATEGIES, apply_residual_init, restore_base

if TYPE_CHECKING:
    from lorakit.layers.linear import LoraLinear


def needs_linear(cfg: LoraConfig) -> bool:
    return cfg.use_dora or cfg.init in RESIDUAL_INITS


def check_variant_targets(
    cfg: LoraConfig, targets: list[tuple[str, nn.Module]], wrapped: dict[str, nn.Module]
) -> None:
    """Refuse, before anything changes, what a variant cannot do on some target."""
    if not needs_linear(cfg):
        return
    what = "use_dora=True" if cfg.use_dora else f"init={cfg.init!r}"
    for name, module in targets:
        if not is_linear_like(module):
            raise TargetError(
                f"{what} supports only nn.Linear / Conv1D targets, but {name!r} is a {type(module).__name__}"
            )
        if cfg.init not in RESIDUAL_INITS:
            continue
        existing = wrapped[name].adapter_names() if name in wrapped else []
        if existing:
            raise TargetError(
                f"init={cfg.init!r} rewrites the base weight of {name!r}, so it must be the first adapter "
                f"there; it already has {existing}"
            )
        if cfg.rank_for(name) > min(linear_features(module)):
            raise TargetError(
                f"init={cfg.init!r}: rank {cfg.rank_for(name)} exceeds min(in, out) = "
                f"{min(linear_features(module))} of {name!r}"
            )


def setup_variants(layer: nn.Module, name: str, cfg: LoraConfig) -> None:
    """After ``layer.add_adapter``: residual init first (it changes the base), then DoRA's magnitude."""
    if cfg.init in RESIDUAL_INITS:
        apply_residual_init(layer, name, RESIDUAL_STRATEGIES[cfg.init])
    if cfg.use_dora:
        layer.lora_magnitude_vector[name] = DoraMagnitude.for_adapter(layer, name)


def drop_variants(layer: LoraLinear, name: str) -> None:
    """Undo what ``setup_variants`` did for adapter ``name`` (the residual goes back into the base)."""
    if name in layer.residual_origin:
        restore_base(layer, name)
    if name in layer.lora_magnitude_vector:
        del layer.lora_magnitude_vector[name]
