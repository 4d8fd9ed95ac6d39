"""``load_adapter``: strict, safe loading of lorakit- and PEFT-saved adapters.

Everything is checked before the model changes, and a failure part-way through is rolled
back, so a failed load leaves the model exactly as it was.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import lorakit.patterns as bounded
from lorakit.adapter_io.integrity import (
    FINGERPRINT_KEY,
    SCALING_KEY,
    fingerprint_mismatch,
    parse_json_metadata,
    read_safetensors,
)
from lorakit.adapter_io.keys import PREFIX, adapter_entries, module_of_key
from lorakit.adapter_io.peft_config import from_peft_dict, read_config_file
from lorakit.adapter_io.save import CONFIG_NAME, WEIGHTS_NAME, base_fingerprint
from lorakit.config import ALL_LINEAR, LoraConfig
from lorakit.errors import AdapterFileError, LorakitError
from lorakit.layers import is_linear_like
from lorakit.model import (
    adapter_state,
    attach_adapter,
    check_adapter_name,
    delete_adapter,
    has_adapters,
    route_to_adapter,
    set_adapter,
    trainable_parameters,
)
from lorakit.paths import check_path_text
from lorakit.targeting import base_modules


def load_adapter(
    model: nn.Module,
    path: str | Path,
    adapter_name: str = "default",
    *,
    is_trainable: bool = False,
    allow_base_mismatch: bool = False,
) -> nn.Module:
    """Load the adapter in folder ``path`` onto ``model`` as ``adapter_name``.

    The first adapter on a model becomes active. With ``is_trainable=False`` (the default)
    nothing requires grad afterwards. Returns the same model object.
    """
    check_adapter_name(adapter_name)
    folder = check_path_text(path)
    if not folder.is_dir():
        raise AdapterFileError(f"{folder}: adapter folder not found")
    try:
        _load(model, folder, adapter_name, is_trainable, allow_base_mismatch)
    except LorakitError:
        raise
    except Exception as e:
        # Every check above should have named the problem; this net keeps the promise that a
        # damaged adapter surfaces as an AdapterFileError, and the fuzzer counts these.
        raise AdapterFileError(
            f"{folder}: unexpected internal error while loading the adapter ({type(e).__name__}: {e})"
        ) from e
    return model


def _load(
    model: nn.Module, folder: Path, adapter_name: str, is_trainable: bool, allow_base_mismatch: bool
) -> None:
    raw = read_config_file(folder / CONFIG_NAME)
    cfg, peft_match = from_peft_dict(raw, folder / CONFIG_NAME)
    tensors, metadata = read_safetensors(folder / WEIGHTS_NAME)
    if has_adapters(model) and adapter_name in adapter_state(model).configs:
        raise LorakitError(f"adapter {adapter_name!r} already exists on this model")
    try:
        resolved = _resolve_against_model(model, cfg, peft_match, tensors, folder)
    except bounded.PatternError as e:  # a module-name pattern of the file is too slow to match
        raise AdapterFileError(f"{folder / CONFIG_NAME}: {e}") from None
    _check_ranks(resolved, tensors, folder)
    _check_scaling(resolved, metadata, folder)
    _check_fingerprint(model, resolved.targets, metadata, folder, allow_base_mismatch)
    _apply(model, resolved, tensors, adapter_name, is_trainable, folder)


def _resolve_against_model(
    model: nn.Module,
    cfg: LoraConfig,
    peft_match: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    folder: Path,
) -> LoraConfig:
    """The config with targets, ranks and alphas pinned to what the file holds."""
    bad = [k for k in tensors if not k.startswith(PREFIX)]
    if bad:
        raise AdapterFileError(f"{folder / WEIGHTS_NAME}: unknown tensor key {bad[0]!r}")
    in_file = {m for m in map(module_of_key, tensors) if m is not None}
    modules = base_modules(model)
    present = {n for n, _ in modules}
    saved = [m for m in cfg.saved_modules() if any(n == m or n.endswith("." + m) for n in present)]
    expected = set(_peft_targets(model, cfg, peft_match, saved, modules))
    if in_file - expected:
        extra = sorted(in_file - expected)[0]
        raise AdapterFileError(
            f"{folder / WEIGHTS_NAME}: unexpected tensors for module {extra!r}, "
            "which the adapter config does not target (or the model lacks)"
        )
    if expected - in_file:
        missing = sorted(expected - in_file)[0]
        raise AdapterFileError(f"{folder / WEIGHTS_NAME}: missing tensors for target {missing!r}")
    if not in_file:
        raise AdapterFileError(f"{folder / WEIGHTS_NAME}: holds no LoRA tensors")
    no_magnitude = sorted(m for m in in_file if f"{PREFIX}{m}.lora_magnitude_vector" not in tensors)
    if cfg.use_dora and no_magnitude:
        raise AdapterFileError(
            f"{folder}: use_dora=true, but {WEIGHTS_NAME} has no lora_magnitude_vector "
            f"for {no_magnitude[0]!r}"
        )
    targets = sorted(in_file)
    return cfg.replaced(
        targets=targets,
        exclude=None,
        layers=None,
        modules_to_save=saved,
        rank_pattern={t: cfg.rank_for(t) for t in targets},
        alpha_pattern={t: cfg.alpha_for(t) for t in targets},
    )


def _check_ranks(cfg: LoraConfig, tensors: dict[str, torch.Tensor], folder: Path) -> None:
    """The config's rank of every target must be the rank its tensors have (checked before any
    layer is built, so an absurd rank in adapter_config.json never allocates anything)."""
    for key, t in tensors.items():
        module = module_of_key(key)
        if module is None or not key.endswith(("lora_A.weight", "lora_embedding_A")):
            continue
        if t.dim() < 2 or t.shape[0] != cfg.rank_for(module):
            raise AdapterFileError(
                f"{folder}: adapter_config.json gives {module!r} rank {cfg.rank_for(module)}, "
                f"but its tensor {key!r} has shape {tuple(t.shape)}"
            )


def _check_scaling(cfg: LoraConfig, metadata: dict[str, str], folder: Path) -> None:
    """lorakit files record each target's scaling; the config must reproduce it exactly."""
    saved = parse_json_metadata(metadata, SCALING_KEY, folder / WEIGHTS_NAME)
    if saved is None:
        return
    current = {t: cfg.scaling_for(t) for t in cfg.targets}
    if not isinstance(saved, dict) or set(saved) != set(current):
        raise AdapterFileError(f"{folder / WEIGHTS_NAME}: metadata {SCALING_KEY!r} is malformed")
    for target, value in sorted(current.items()):
        if saved[target] != value:
            raise AdapterFileError(
                f"{folder}: adapter_config.json gives {target!r} scaling {value!r}, but the weights "
                f"were saved with scaling {saved[target]!r} (lora_alpha, r, rank/alpha_pattern or "
                "use_rslora edited?)"
            )


def _peft_targets(
    model: nn.Module,
    cfg: LoraConfig,
    peft_match: dict[str, Any],
    modules_to_save: list[str],
    modules: list[tuple[str, nn.Module]],
) -> list[str]:
    """The modules PEFT would adapt for this config (PEFT's matching rules, not lorakit's);
    ``modules`` is ``base_modules(model)``."""
    spec = cfg.targets
    if spec == ALL_LINEAR:
        get_out = getattr(model, "get_output_embeddings", None)
        head = get_out() if callable(get_out) else None
        # PEFT expands "all-linear" to the full names of every Linear/Conv1D but the output head
        # (here possibly inside a FrozenLinear, as `lorakit serve` runs it).
        heads = (head, getattr(head, "base_layer", None)) if head is not None else ()
        spec = [n for n, m in modules if is_linear_like(m) and not any(m is h for h in heads)]
    out = []
    targeted = _suffix_or_regex(spec)
    excluded = _suffix_or_regex(cfg.exclude) if cfg.exclude is not None else None
    for name, _ in modules:
        if excluded is not None and excluded(name):
            continue
        if any(re.match(rf"(^|.*\.){re.escape(m)}($|\..*)", name) for m in modules_to_save):
            continue
        if not targeted(name):
            continue
        layers = peft_match.get("layers_to_transform")
        # As in PEFT, layers_to_transform filters suffix matches only, not exact full names.
        if (
            layers
            and isinstance(spec, list)
            and name not in spec
            and _peft_layer_index(name, peft_match.get("layers_pattern")) not in layers
        ):
            continue
        out.append(name)
    return out


def _suffix_or_regex(spec: list[str] | str) -> Callable[[str], bool]:
    """Whether a name matches ``spec`` (a regex, or names matching exactly or as a dotted suffix);
    a list is checked by the name's dotted suffixes, in time linear in the name, not the list."""
    if isinstance(spec, str):
        return lambda name: bounded.fullmatch(spec, name)
    names = frozenset(spec)

    def hit(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[i:]) in names for i in range(len(parts)))

    return hit


def _peft_layer_index(name: str, layers_pattern: str | list[str] | None) -> int | None:
    if not layers_pattern:
        m = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name)
        return int(m.group("idx")) if m else None
    for pattern in [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern:
        m = bounded.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", name)
        if m:
            return int(m.group("idx"))
    return None


def _check_fingerprint(
    model: nn.Module,
    targets: list[str],
    metadata: dict[str, str],
    folder: Path,
    allow_base_mismatch: bool,
) -> None:
    saved = parse_json_metadata(metadata, FINGERPRINT_KEY, folder / WEIGHTS_NAME)
    if saved is None:
        warnings.warn(
            f"{folder}: adapter has no base-model fingerprint (saved by PEFT?); "
            "cannot check that it belongs to this base model",
            stacklevel=4,
        )
        return
    if not isinstance(saved, dict):
        raise AdapterFileError(f"{folder / WEIGHTS_NAME}: metadata {FINGERPRINT_KEY!r} is malformed")
    problem = fingerprint_mismatch(saved, base_fingerprint(model, targets))
    if problem and not allow_base_mismatch:
        raise AdapterFileError(
            f"{folder}: this adapter was trained on a different base model: {problem}. "
            "Pass allow_base_mismatch=True to load it anyway."
        )
    if problem:
        warnings.warn(f"{folder}: loading onto a different base model: {problem}", stacklevel=4)


def _apply(
    model: nn.Module,
    cfg: LoraConfig,
    tensors: dict[str, torch.Tensor],
    name: str,
    is_trainable: bool,
    folder: Path,
) -> None:
    first = not has_adapters(model)
    # Only a model's first adapter changes flags beyond its own tensors (add_adapter freezes the
    # model); a further adapter adds tensors and changes nothing else (not even which adapter is
    # active), so undoing it is deleting it. (Snapshotting every flag walked every loaded adapter.)
    trainable = trainable_parameters(model) if first else None
    try:
        modules = attach_adapter(model, name, cfg, initialize=False)
        entries = adapter_entries(model, name, modules)
        unknown = sorted(set(tensors) - set(entries))
        missing = sorted(set(entries) - set(tensors))
        if unknown:
            raise AdapterFileError(f"{folder / WEIGHTS_NAME}: unknown tensor key {unknown[0]!r}")
        if missing:
            raise AdapterFileError(f"{folder / WEIGHTS_NAME}: missing tensor key {missing[0]!r}")
        for key, target in entries.items():
            if tuple(tensors[key].shape) != tuple(target.shape):
                raise AdapterFileError(
                    f"{folder / WEIGHTS_NAME}: tensor {key!r} has shape {tuple(tensors[key].shape)}, "
                    f"the model expects {tuple(target.shape)}"
                )
        with torch.no_grad():
            for key, target in entries.items():
                target.copy_(tensors[key].to(target.dtype))
    except Exception:
        if has_adapters(model) and name in adapter_state(model).configs:
            delete_adapter(model, name)
        for p in trainable or ():
            p.requires_grad_(True)
        raise
    # A further adapter stays inactive and every requires_grad flag stays as it was
    # (set_adapter(previous) here would make a frozen inference model trainable again).
    if first and is_trainable:
        set_adapter(model, name)
    elif first:  # add_adapter froze the whole model and the new tensors: only the routing changes
        route_to_adapter(model, name, modules)
