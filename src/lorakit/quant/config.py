"""``QuantConfig``: how the frozen base Linear weights are stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lorakit.errors import ConfigError

QuantMethod = Literal["nf4", "int8"]
_METHODS = ("nf4", "int8")


@dataclass
class QuantConfig:
    """Quantization of the base model's Linear weights (LoRA A/B always stay in float)."""

    method: QuantMethod = "nf4"
    """"nf4": 4-bit NormalFloat with block-wise absmax scales; "int8": int8 with per-row absmax."""
    block_size: int = 64
    """Weights per NF4 block sharing one absmax scale (ignored by int8)."""
    double_quant: bool = False
    """NF4 only: store the block scales as int8 (one float32 scale per 256 blocks) too."""
    skip: list[str] = field(default_factory=list)
    """Module names (exact or dotted suffix) kept in float; output heads are always kept."""

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ConfigError(f"QuantConfig.method = {self.method!r} is invalid: expected one of {_METHODS}")
        ok = isinstance(self.block_size, int) and not isinstance(self.block_size, bool)
        if not ok or self.block_size < 2 or self.block_size % 2:
            raise ConfigError(
                f"QuantConfig.block_size = {self.block_size!r} is invalid: expected an even integer >= 2"
            )
        if not isinstance(self.double_quant, bool):
            raise ConfigError(
                f"QuantConfig.double_quant = {self.double_quant!r} is invalid: expected true or false"
            )
        if not isinstance(self.skip, (list, tuple)) or not all(isinstance(s, str) and s for s in self.skip):
            raise ConfigError(f"QuantConfig.skip = {self.skip!r} is invalid: expected a list of module names")
        self.skip = list(self.skip)
