"""``LoraConfig``: the typed, validated description of one adapter."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import lorakit.patterns as bounded
from lorakit.errors import ConfigError

BiasMode = Literal["none", "all", "lora_only"]
InitMode = Literal["kaiming", "gaussian", "pissa", "olora"]
ALL_LINEAR = "all-linear"
_BIAS_MODES = ("none", "all", "lora_only")
_INIT_MODES = ("kaiming", "gaussian", "pissa", "olora")
# Inits that move part of W0 into A and B, leaving the residual in the base weight.
RESIDUAL_INITS = ("pissa", "olora")


@dataclass
class LoraConfig:
    """Hyperparameters of one LoRA adapter. Validated on construction."""

    r: int = 8
    """Rank of the update: A is (r x in), B is (out x r)."""
    alpha: float = 8.0
    """Scale numerator: the update is multiplied by alpha / r (alpha / sqrt(r) with use_rslora)."""
    dropout: float = 0.0
    """Dropout probability applied to the layer input of the low-rank branch only."""
    targets: list[str] | str = ALL_LINEAR
    """Module names (exact or dotted suffix), one regex string (full match), or "all-linear"."""
    exclude: list[str] | str | None = None
    """Modules never adapted, same syntax as ``targets``."""
    layers: list[int] | None = None
    """Indices of transformer blocks to adapt (None: all)."""
    layers_pattern: str | None = None
    """Name of the block container (e.g. "layer", "h", "layers"); None: first numeric segment."""
    rank_pattern: dict[str, int] = field(default_factory=dict)
    """Per-module rank overrides: {name suffix or regex: rank}."""
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    """Per-module alpha overrides: {name suffix or regex: alpha}."""
    bias: BiasMode = "none"
    """Which biases train: "none", "all" (every bias), "lora_only" (biases of adapted layers)."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained fully and saved with the adapter, e.g. a classifier head."""
    init: InitMode = "kaiming"
    """Initialisation: "kaiming" (A kaiming-uniform(a=sqrt(5)), B zero), "gaussian" (A normal(std=1/r),
    B zero), "pissa" (A, B from the top-r singular triplets of W0) or "olora" (A, B from a QR
    decomposition of W0). With pissa/olora the base weight keeps the residual W0 - scaling * B @ A,
    and save_adapter writes an equivalent plain LoRA (rank 2r) against the original W0."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(r) instead of alpha / r."""
    use_dora: bool = False
    """DoRA: W = m * (W0 + scaling * B @ A) / ||W0 + scaling * B @ A|| (norm per output row), with a
    trainable magnitude m initialised to ||W0||. Linear and Conv1D layers only."""

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        _check(
            isinstance(self.r, int) and not isinstance(self.r, bool) and self.r >= 1,
            "r",
            self.r,
            "an integer >= 1",
        )
        _check(_is_number(self.alpha) and self.alpha > 0, "alpha", self.alpha, "a number > 0")
        _check(
            _is_number(self.dropout) and 0 <= self.dropout < 1,
            "dropout",
            self.dropout,
            "a number in [0, 1)",
        )
        _check(self.bias in _BIAS_MODES, "bias", self.bias, f"one of {_BIAS_MODES}")
        _check(self.init in _INIT_MODES, "init", self.init, f"one of {_INIT_MODES}")
        _check(isinstance(self.use_rslora, bool), "use_rslora", self.use_rslora, "true or false")
        _check(isinstance(self.use_dora, bool), "use_dora", self.use_dora, "true or false")
        self.targets = _names_or_regex("targets", self.targets)
        if self.exclude is not None:
            self.exclude = _names_or_regex("exclude", self.exclude)
        if self.layers is not None:
            ok = isinstance(self.layers, (list, tuple)) and all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.layers
            )
            _check(ok, "layers", self.layers, "a list of block indices >= 0")
            self.layers = list(self.layers)
        for field_name in ("rank_pattern", "alpha_pattern"):
            for key in getattr(self, field_name):
                _check_bounded(f"{field_name}[{key!r}]", key)
        for key, rank in dict(self.rank_pattern).items():
            _check(
                isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1,
                f"rank_pattern[{key!r}]",
                rank,
                "an integer >= 1",
            )
        for key, alpha in dict(self.alpha_pattern).items():
            _check(_is_number(alpha) and alpha > 0, f"alpha_pattern[{key!r}]", alpha, "a number > 0")
        _check(
            isinstance(self.modules_to_save, (list, tuple))
            and all(isinstance(m, str) and m for m in self.modules_to_save),
            "modules_to_save",
            self.modules_to_save,
            "a list of module names",
        )
        self.modules_to_save = list(self.modules_to_save)

    def rank_for(self, module_name: str) -> int:
        """Rank of the adapter on ``module_name`` after rank_pattern overrides."""
        key = match_pattern_key(self.rank_pattern, module_name)
        return self.rank_pattern[key] if key is not None else self.r

    def alpha_for(self, module_name: str) -> float:
        """Alpha of the adapter on ``module_name`` after alpha_pattern overrides."""
        key = match_pattern_key(self.alpha_pattern, module_name)
        return float(self.alpha_pattern[key]) if key is not None else float(self.alpha)

    def scaling_for(self, module_name: str) -> float:
        """The factor multiplying B @ A on ``module_name``."""
        r, alpha = self.rank_for(module_name), self.alpha_for(module_name)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def match_pattern_key(patterns: dict[str, Any], module_name: str) -> str | None:
    """The first pattern key (in order) that applies to ``module_name``.

    A key applies when it equals the name, is a dotted suffix of it, or matches a dotted suffix
    as a regex; first-in-order wins, exactly as PEFT resolves rank_pattern / alpha_pattern.
    """
    for key in patterns:
        if key == module_name or module_name.endswith("." + key):
            return key
        try:
            if bounded.fullmatch(rf"(.*\.)?(?:{key})", module_name):
                return key
        except bounded.PatternSyntaxError:
            continue  # not a regex: a plain name, handled above
    return None


def _names_or_regex(name: str, value: Any) -> list[str] | str:
    if isinstance(value, str):
        if value != ALL_LINEAR:
            try:
                bounded.compile_pattern(value)
            except bounded.PatternError as e:
                raise ConfigError(f"{name}: {e}") from e
        return value
    ok = (
        isinstance(value, (list, tuple, set))
        and len(value) > 0
        and all(isinstance(v, str) and v for v in value)
    )
    _check(ok, name, value, 'a non-empty list of module names, a regex string, or "all-linear"')
    return sorted(value) if isinstance(value, set) else list(value)


def _check_bounded(name: str, key: Any) -> None:
    if isinstance(key, str):
        try:
            bounded.check_bounded(key)
        except bounded.PatternError as e:
            raise ConfigError(f"{name}: {e}") from e


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"LoraConfig.{name} = {value!r} is invalid: expected {allowed}")
