"""``LoraConfig``: the typed, validated description of one adapter, in code and in YAML.

One pydantic model: the library's ``LoraConfig(...)`` and the run config's ``lora:`` section
(``RunConfig.lora``) are the same class with the same defaults, so every field here is a YAML
key (``lora.rank_pattern``, ``lora.layers_pattern``, ...) and the rank travels from the YAML to
the layer through this one schema. Built in code, a bad value raises ``ConfigError`` naming
``LoraConfig.<field>``, the value and what is allowed; inside a run config, the same check is
reported against its key path (``lora.r``).
"""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import lorakit.patterns as bounded
from lorakit.errors import ConfigError

BiasMode = Literal["none", "all", "lora_only"]
InitMode = Literal["kaiming", "gaussian", "pissa", "olora"]
ALL_LINEAR = "all-linear"
# Inits that move part of W0 into A and B, leaving the residual in the base weight.
RESIDUAL_INITS = ("pissa", "olora")


class LoraConfigError(ConfigError):
    """Bad LoraConfig values; ``problems`` holds pydantic's error records (``loc`` is the field),
    so a run config can report them against its own key path (``lora.r``)."""

    def __init__(self, err: ValidationError) -> None:
        self.problems = err.errors()
        super().__init__(describe_errors(self.problems))


class LoraConfig(BaseModel):
    """Hyperparameters of one LoRA adapter. Validated on construction and on assignment."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)

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
    rank_pattern: dict[str, int] = Field(default_factory=dict)
    """Per-module rank overrides: {name suffix or regex: rank}; the first matching key wins."""
    alpha_pattern: dict[str, float] = Field(default_factory=dict)
    """Per-module alpha overrides: {name suffix or regex: alpha}; the first matching key wins."""
    bias: BiasMode = "none"
    """Which biases train: "none", "all" (every bias), "lora_only" (biases of adapted layers)."""
    modules_to_save: list[str] | None = None
    """Modules trained fully and saved with the adapter, e.g. a classifier head. None: none in
    the library; in a run config, the task's head (e.g. classifier)."""
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

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise LoraConfigError(e) from None

    @field_validator("r", mode="before")
    @classmethod
    def _rank(cls, v: Any) -> Any:
        _expect(_is_int(v) and v >= 1, "an integer >= 1")
        return v

    @field_validator("alpha", mode="before")
    @classmethod
    def _alpha(cls, v: Any) -> Any:
        _expect(_is_number(v) and v > 0, "a number > 0")
        return v

    @field_validator("dropout", mode="before")
    @classmethod
    def _dropout(cls, v: Any) -> Any:
        _expect(_is_number(v) and 0 <= v < 1, "a number in [0, 1)")
        return v

    @field_validator("bias", "init", mode="before")
    @classmethod
    def _choice(cls, v: Any, info: Any) -> Any:
        choices = get_args(BiasMode if info.field_name == "bias" else InitMode)
        _expect(v in choices, f"one of {choices}")
        return v

    @field_validator("use_rslora", "use_dora", mode="before")
    @classmethod
    def _flag(cls, v: Any) -> Any:
        _expect(isinstance(v, bool), "true or false")
        return v

    @field_validator("targets", "exclude", mode="before")
    @classmethod
    def _module_spec(cls, v: Any, info: Any) -> Any:
        return v if v is None else _names_or_regex(info.field_name, v)

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        ok = v is None or (isinstance(v, (list, tuple)) and all(_is_int(i) and i >= 0 for i in v))
        _expect(ok, "a list of block indices >= 0")
        return v

    @field_validator("rank_pattern", "alpha_pattern", mode="before")
    @classmethod
    def _patterns(cls, v: Any, info: Any) -> Any:
        _expect(isinstance(v, dict), "a mapping {module name or regex: value}")
        rank = info.field_name == "rank_pattern"
        for key, value in v.items():
            where = f"{info.field_name}[{key!r}]"
            if isinstance(key, str):
                try:
                    bounded.check_bounded(key)
                except bounded.PatternError as e:
                    raise _NamedProblem(f"{where}: {e}") from None
            ok = _is_int(value) and value >= 1 if rank else _is_number(value) and value > 0
            if not ok:
                allowed = "an integer >= 1" if rank else "a number > 0"
                raise ValueError(f"{where} = {value!r}: expected {allowed}")
        return v

    @field_validator("modules_to_save", mode="before")
    @classmethod
    def _saved(cls, v: Any) -> Any:
        ok = v is None or (isinstance(v, (list, tuple)) and all(isinstance(m, str) and m for m in v))
        _expect(ok, "a list of module names")
        return v

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

    def saved_modules(self) -> list[str]:
        """``modules_to_save`` with None read as none."""
        return list(self.modules_to_save or [])

    def with_saved_default(self, modules: list[str]) -> LoraConfig:
        """This config, with ``modules`` (e.g. the task's head) when modules_to_save is None."""
        if self.modules_to_save is not None:
            return self
        return self.model_copy(update={"modules_to_save": list(modules)})

    def replaced(self, **changes: Any) -> LoraConfig:
        """A copy with ``changes``, validated like a new config."""
        return LoraConfig(**{**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def describe_errors(problems: list[Any]) -> str:
    """``LoraConfig.<field> = <value> is invalid: <what is allowed>``, one line per problem."""
    lines = []
    for item in problems:
        field = ".".join(str(x) for x in item["loc"][:1]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"LoraConfig.{field} is not a field; fields: {', '.join(LoraConfig.model_fields)}")
            continue
        msg = item["msg"].removeprefix("Value error, ")
        if isinstance(item.get("ctx", {}).get("error"), _NamedProblem):
            lines.append(f"LoraConfig.{msg}")
            continue
        shown = repr(item.get("input"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        lines.append(f"LoraConfig.{field} = {shown} is invalid: {msg}")
    return "; ".join(dict.fromkeys(lines))


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


class _NamedProblem(ValueError):
    """A message that already names the field and the value (``targets: pattern '...' ...``)."""


def _names_or_regex(name: str, value: Any) -> list[str] | str:
    if isinstance(value, str):
        if value != ALL_LINEAR:
            try:
                bounded.compile_pattern(value)
            except bounded.PatternError as e:
                raise _NamedProblem(f"{name}: {e}") from None
        return value
    ok = (
        isinstance(value, (list, tuple, set))
        and len(value) > 0
        and all(isinstance(v, str) and v for v in value)
    )
    _expect(ok, 'a non-empty list of module names, a regex string, or "all-linear"')
    return sorted(value) if isinstance(value, set) else list(value)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _expect(ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"expected {allowed}")
