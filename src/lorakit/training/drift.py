"""Resume drift: a resumed run must continue the run its checkpoint came from.

Resuming with another seed, learning rate, batch size, rank, target list or base model would
silently produce an adapter that neither configuration describes, so every change of a key that
affects the training is refused with old and new values, unless the config lists the key in
``resume_allow_changes``. Keys that only steer bookkeeping (``FREE_KEYS``) may change freely;
keys that shape the checkpoint's tensors (``FIXED_KEYS``) can never change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lorakit.adapter_io.integrity import FINGERPRINT_KEY, fingerprint_mismatch, read_safetensors
from lorakit.adapter_io.save import WEIGHTS_NAME
from lorakit.errors import ConfigError
from lorakit.runconfig.schema import RunConfig
from lorakit.training.checkpoint import list_checkpoints, read_trainer_state

# Evaluation cadence, logging, checkpoint bookkeeping, threads, where outputs go: none of these
# touches the weights a step produces.
FREE_KEYS = frozenset(
    {
        "output_dir",
        "resume",
        "resume_allow_changes",
        "data.test",
        "train.eval_every",
        "train.eval_at_start",
        "train.eval_batch_size",
        "train.save_every",
        "train.keep_checkpoints",
        "train.log_every",
        "train.num_threads",
    }
)
# The checkpoint's tensors (and the task's head) have the shapes these keys give them.
FIXED_KEYS = frozenset(
    {
        "task",
        "lora.r",
        "lora.rank_pattern",
        "lora.targets",
        "lora.exclude",
        "lora.layers",
        "lora.layers_pattern",
        "lora.bias",
        "lora.modules_to_save",
    }
)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys (dotted) whose value differs, except free ones and keys the saved config lacks."""
    old, new = flatten(saved), flatten(current)
    return {
        key: (old[key], new.get(key))
        for key in sorted(old)
        if key not in FREE_KEYS and old[key] != new.get(key)
    }


def check_resume_config(config: RunConfig) -> list[str]:
    """Refuse a resume whose config drifted from the newest checkpoint's; returns allowed changes.

    Cheap (no model is loaded), so it runs before setup. No checkpoint, or resume "never": [].
    """
    if config.resume != "auto":
        return []
    found = list_checkpoints(Path(config.output_dir) / "checkpoints")
    if not found:
        return []
    saved = read_trainer_state(found[-1]).get("config")
    if not isinstance(saved, dict):
        return []
    changes = config_changes(saved, config.model_dump(mode="json"))
    allowed = set(config.resume_allow_changes)
    fixed = sorted(k for k in changes if k in FIXED_KEYS)
    refused = {k: v for k, v in changes.items() if k not in allowed or k in FIXED_KEYS}
    if refused:
        lines = [f"  {k}: {old!r} (checkpoint) -> {new!r} (now)" for k, (old, new) in refused.items()]
        hint = (
            f"{', '.join(fixed)} cannot change on resume (the checkpoint's tensors have their shapes); "
            if fixed
            else ""
        )
        free = sorted(k for k in refused if k not in FIXED_KEYS)
        override = ""
        if free:
            override = f", or allow a deliberate change with resume_allow_changes=[{','.join(free)}]"
        raise ConfigError(
            f"resume refused: the config differs from the one {found[-1]} was trained with:\n"
            + "\n".join(lines)
            + f"\n{hint}restore the old values or start a fresh run in another output_dir{override}"
        )
    return [f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items()]


def check_resume_base(folder: Path, current_metadata: dict[str, str], config: RunConfig) -> None:
    """Same ``model`` string, other weights (a folder overwritten since): refuse as well."""
    if "model" in config.resume_allow_changes:
        return
    _, metadata = read_safetensors(folder / "adapter" / WEIGHTS_NAME)
    saved = json.loads(metadata[FINGERPRINT_KEY]) if FINGERPRINT_KEY in metadata else None
    if saved is None:
        return
    problem = fingerprint_mismatch(saved, json.loads(current_metadata[FINGERPRINT_KEY]))
    if problem:
        raise ConfigError(
            f"resume refused: the base model {config.model!r} is not the one {folder} was trained on "
            f"({problem}); allow it deliberately with resume_allow_changes=[model]"
        )
