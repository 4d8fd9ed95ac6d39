"""``save_adapter``: PEFT-compatible files, with a base fingerprint and a content checksum."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lorakit.adapter_io.integrity import (
    CHECKSUM_KEY,
    CONFIG_KEY,
    FINGERPRINT_KEY,
    SCALING_KEY,
    atomic_write_bytes,
    atomic_write_text,
    checksum,
    fingerprint,
    safetensors_payload,
)
from lorakit.adapter_io.keys import adapted_modules, adapter_entries, saved_module_names
from lorakit.adapter_io.peft_config import to_peft_dict
from lorakit.adapter_io.residual_export import as_plain_lora
from lorakit.config import RESIDUAL_INITS
from lorakit.distributed.gather import full_tensor
from lorakit.distributed.strategy import original_class_name
from lorakit.errors import AdapterFileError
from lorakit.layers.base import base_identity
from lorakit.model import adapter_state, check_adapter_name
from lorakit.paths import check_path_text, check_write_target

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


@dataclass(frozen=True)
class AdapterPayload:
    """Everything an adapter folder holds, as full CPU tensors and text, before any write."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    config: dict


def base_fingerprint(model: nn.Module, targets: list[str]) -> dict:
    identities = {name: base_identity(model.get_submodule(name)) for name in targets}
    return fingerprint(original_class_name(model), identities)


def save_adapter(
    model: nn.Module,
    path: str | Path,
    adapter_name: str | None = None,
    *,
    base_model_name: str | None = None,
) -> Path:
    """Write adapter ``adapter_name`` (default: the active one) to the folder ``path``.

    Both files are written atomically; an adapter with no tensors is refused, and so is a
    path with a NUL byte or a file in the folder that is a symlink leading outside it. A
    pissa/olora adapter is written as the equivalent plain LoRA against the original base
    weights (see adapter_io/residual_export.py), so it loads onto the original base model.
    On a model sharded with FSDP use ``adapter_payload`` on every rank and write it from one.
    """
    out = check_path_text(path)
    return write_adapter(adapter_payload(model, adapter_name, base_model_name=base_model_name), out)


def adapter_payload(
    model: nn.Module, adapter_name: str | None = None, *, base_model_name: str | None = None
) -> AdapterPayload:
    """The adapter's files in memory, with sharded (FSDP) tensors gathered to full ones.

    Collective on a sharded model: every rank must call it, in the same order.
    """
    state = adapter_state(model)
    name = adapter_name or state.active
    if name is None or name not in state.configs:
        raise AdapterFileError(f"no adapter named {name!r}; this model has {list(state.configs)}")
    check_adapter_name(name)
    entries = adapter_entries(model, name)
    if not entries:
        raise AdapterFileError(f"adapter {name!r} has no tensors; refusing to write an empty adapter")
    tensors = {k: full_tensor(v.detach()).to("cpu", copy=True).contiguous() for k, v in entries.items()}
    targets = adapted_modules(model, name)
    cfg = state.configs[name]
    if cfg.init in RESIDUAL_INITS:
        cfg, tensors = as_plain_lora(model, name, cfg, tensors)
    if base_model_name is None:
        base_model_name = getattr(model, "name_or_path", None) or None
    metadata = {
        "format": "pt",
        CHECKSUM_KEY: checksum(tensors),
        FINGERPRINT_KEY: json.dumps(base_fingerprint(model, targets)),
        SCALING_KEY: json.dumps({t: cfg.scaling_for(t) for t in targets}),
        CONFIG_KEY: json.dumps(cfg.to_dict()),
    }
    fan_in_fan_out = any(getattr(model.get_submodule(t), "fan_in_fan_out", False) for t in targets)
    config = to_peft_dict(cfg, targets, saved_module_names(model, name), base_model_name, fan_in_fan_out)
    return AdapterPayload(tensors, metadata, config)


def write_adapter(payload: AdapterPayload, path: str | Path) -> Path:
    """Write both files of an adapter folder atomically."""
    out = check_path_text(path)
    for file in (WEIGHTS_NAME, CONFIG_NAME):
        check_write_target(out, out / file)
    try:
        atomic_write_bytes(out / WEIGHTS_NAME, safetensors_payload(payload.tensors, payload.metadata))
        atomic_write_text(out / CONFIG_NAME, json.dumps(payload.config, indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise AdapterFileError(f"{out}: cannot write the adapter ({e.strerror or e})") from e
    return out
