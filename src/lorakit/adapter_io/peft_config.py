"""Translation between ``LoraConfig`` and PEFT's ``adapter_config.json``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import lorakit.patterns as bounded
from lorakit.config import LoraConfig
from lorakit.errors import AdapterFileError, ConfigError

# Fields of PEFT's LoraConfig that carry no meaning for lorakit at their default values.
_IGNORED = {
    "task_type",
    "peft_type",
    "auto_mapping",
    "peft_version",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "fan_in_fan_out",
    "megatron_config",
    "megatron_core",
    "loftq_config",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "velora_config",
    "qalora_group_size",
    "monteclora_config",
    "kasa_config",
    "arrow_config",
    "use_bdlora",
    "ensure_weight_tying",
    "alora_invocation_tokens",
    "use_qalora",
}
# Fields lorakit reads.
_READ = {
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "exclude_modules",
    "layers_to_transform",
    "layers_pattern",
    "rank_pattern",
    "alpha_pattern",
    "bias",
    "modules_to_save",
    "init_lora_weights",
    "use_rslora",
    "use_dora",
}
# Fields whose non-default values change the computation in ways lorakit does not implement.
_UNSUPPORTED_IF_SET = {
    "layer_replication": None,
    "trainable_token_indices": None,
    "lora_bias": False,
    "target_parameters": None,
    "use_qalora": False,
    "alora_invocation_tokens": None,
    "use_bdlora": None,
}


def to_peft_dict(
    cfg: LoraConfig,
    targets: list[str],
    modules_to_save: list[str],
    base_model_name: str | None,
    fan_in_fan_out: bool = False,
) -> dict[str, Any]:
    """adapter_config.json for ``cfg`` with its targets resolved to full module names.

    Resolved names make PEFT apply the adapter to exactly the modules lorakit used, whatever
    differences remain between the two tools' pattern rules.
    """
    rank_pattern = {n: cfg.rank_for(n) for n in targets if cfg.rank_for(n) != cfg.r}
    alpha_pattern = {n: cfg.alpha_for(n) for n in targets if cfg.alpha_for(n) != cfg.alpha}
    return {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": base_model_name,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": sorted(targets),
        "exclude_modules": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "bias": cfg.bias,
        "modules_to_save": sorted(modules_to_save) or None,
        "init_lora_weights": True if cfg.init == "kaiming" else cfg.init,
        "use_rslora": cfg.use_rslora,
        "use_dora": cfg.use_dora,
        # True for GPT-2 style Conv1D targets, as PEFT writes it (PEFT warns otherwise).
        "fan_in_fan_out": fan_in_fan_out,
        "inference_mode": True,
    }


MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise AdapterFileError(f"{path}: adapter_config.json not found")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise AdapterFileError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes, not an adapter config")
        text = path.read_bytes().decode("utf-8")
        raw = json.loads(text, parse_constant=_reject_constant)
    except OSError as e:
        raise AdapterFileError(f"{path}: cannot read the file ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise AdapterFileError(f"{path}: not UTF-8 text ({e})") from e
    except json.JSONDecodeError as e:
        raise AdapterFileError(f"{path}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}") from e
    except (ValueError, RecursionError) as e:
        raise AdapterFileError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise AdapterFileError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def from_peft_dict(raw: dict[str, Any], source: Path) -> tuple[LoraConfig, dict[str, Any]]:
    """A ``LoraConfig`` from adapter_config.json, plus the PEFT-only matching fields.

    Unknown fields are warned about and ignored; unsupported non-default fields are errors.
    """
    if raw.get("peft_type", "LORA") != "LORA":
        raise AdapterFileError(f"{source}: peft_type {raw.get('peft_type')!r} is not LORA")
    unknown = sorted(set(raw) - _READ - _IGNORED - set(_UNSUPPORTED_IF_SET))
    if unknown:
        warnings.warn(f"{source}: ignoring unknown adapter_config.json fields {unknown}", stacklevel=4)
    for key, default in _UNSUPPORTED_IF_SET.items():
        if raw.get(key, default) not in (default, [], {}):
            raise AdapterFileError(f"{source}: {key}={raw[key]!r} is not supported by lorakit")
    _check_field_types(raw, source)
    init = raw.get("init_lora_weights", True)
    init = "kaiming" if init in (True, False, None) else init
    if "target_modules" not in raw or raw["target_modules"] in (None, [], ""):
        raise AdapterFileError(f"{source}: field target_modules is missing")
    try:
        cfg = LoraConfig(
            r=_field(raw, "r", source),
            alpha=_field(raw, "lora_alpha", source),
            dropout=_or(raw.get("lora_dropout"), 0.0),
            targets=raw["target_modules"],
            exclude=raw.get("exclude_modules"),
            rank_pattern=raw.get("rank_pattern") or {},
            alpha_pattern=raw.get("alpha_pattern") or {},
            bias=raw.get("bias", "none"),
            modules_to_save=list(raw.get("modules_to_save") or []),
            init=init,
            use_rslora=_or(raw.get("use_rslora"), False),
            use_dora=_or(raw.get("use_dora"), False),
        )
    except ConfigError as e:
        raise AdapterFileError(f"{source}: {e}") from e
    layers = raw.get("layers_to_transform")
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    peft_matching = {"layers_to_transform": layers, "layers_pattern": raw.get("layers_pattern")}
    return cfg, peft_matching


def _field(raw: dict[str, Any], key: str, source: Path) -> Any:
    if key not in raw:
        raise AdapterFileError(f"{source}: field {key} is missing")
    return raw[key]


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


# Shape of each optional field lorakit reads, as a PEFT file may legally hold it (null allowed).
_FIELD_TYPES = {
    "rank_pattern": (lambda v: isinstance(v, dict), "an object {module pattern: rank}"),
    "alpha_pattern": (lambda v: isinstance(v, dict), "an object {module pattern: alpha}"),
    "modules_to_save": (_is_str_list, "a list of module names"),
    "layers_to_transform": (
        lambda v: _is_int_list(v) or (isinstance(v, int) and not isinstance(v, bool)),
        "a block index or a list of them",
    ),
    "layers_pattern": (lambda v: isinstance(v, str) or _is_str_list(v), "a name or a list of names"),
    "use_rslora": (lambda v: isinstance(v, bool), "true or false"),
    "init_lora_weights": (lambda v: isinstance(v, (bool, str)), 'true, false or "gaussian"'),
}


def _check_field_types(raw: dict[str, Any], source: Path) -> None:
    for key, (ok, allowed) in _FIELD_TYPES.items():
        value = raw.get(key)
        if value is not None and not ok(value):
            raise AdapterFileError(f"{source}: field {key} = {value!r} is invalid: expected {allowed}")
    patterns = raw.get("layers_pattern")
    for pattern in [patterns] if isinstance(patterns, str) else patterns or []:
        try:
            bounded.compile_pattern(pattern)
        except bounded.PatternError as e:
            raise AdapterFileError(f"{source}: layers_pattern: {e}") from e
