"""Putting adapters into a model and managing several of them: inject, add, set, delete, disable."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from torch import nn

from lorakit.config import RESIDUAL_INITS, LoraConfig
from lorakit.errors import ConfigError, LorakitError, TargetError
from lorakit.layers import LORA_TYPES, LoraLinear, ModulesToSave, wrap
from lorakit.layers.base import NO_INIT
from lorakit.layers.variants import check_variant_targets, setup_variants
from lorakit.targeting import inside_any, resolve_targets

ADAPTER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT = "default"


@dataclass
class AdapterState:
    """What lorakit remembers on a model: each adapter's config and which one is active."""

    configs: dict[str, LoraConfig] = field(default_factory=dict)
    active: str | None = None


def check_adapter_name(name: object) -> str:
    if not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name):
        raise ConfigError(f"adapter name {name!r} is invalid: use 1-64 characters from A-Z a-z 0-9 _ -")
    return name


def adapter_state(model: nn.Module) -> AdapterState:
    state = model.__dict__.get("_lorakit")
    if state is None:
        raise LorakitError("this model has no lorakit adapter: call lorakit.inject(model, cfg) first")
    return state


def has_adapters(model: nn.Module) -> bool:
    return model.__dict__.get("_lorakit") is not None


def lora_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    return iter(adapter_modules(model)[0])


def saved_modules(model: nn.Module) -> Iterator[tuple[str, ModulesToSave]]:
    return iter(adapter_modules(model)[1])


def adapter_modules(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, ModulesToSave]]]:
    """``(list(lora_layers(model)), list(saved_modules(model)))`` from one walk of the model."""
    layers: list[tuple[str, nn.Module]] = []
    saved: list[tuple[str, ModulesToSave]] = []
    for name, module in _named_modules_outside_tables(model):
        if isinstance(module, LORA_TYPES):
            layers.append((name, module))
        elif isinstance(module, ModulesToSave):
            saved.append((name, module))
    return layers, saved


def _named_modules_outside_tables(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``named_modules`` (same names, order, and a module reached twice listed once), except that
    inside a LoRA wrapper only ``base_layer`` is entered: the per-adapter tables hold nothing but
    each adapter's own A/B/dropout, and walking them made every walk grow with the adapters loaded."""
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        prefix, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        out.append((prefix, module))
        if isinstance(module, LORA_TYPES):
            children = [("base_layer", module.base_layer)]
        else:
            children = [(n, c) for n, c in module._modules.items() if c is not None]
        dot = prefix + "." if prefix else ""
        stack.extend((dot + n, c) for n, c in reversed(children))
    return out


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def inject(model: nn.Module, cfg: LoraConfig, adapter_name: str = DEFAULT) -> nn.Module:
    """Freeze ``model`` and add a LoRA adapter to the modules ``cfg`` targets, in place.

    The new adapter is active and the only thing that trains (with the biases and
    modules_to_save that ``cfg`` asks for). Returns the same model object.
    """
    if has_adapters(model):
        raise LorakitError("model already has lorakit adapters; use add_adapter(model, name, cfg)")
    model.__dict__["_lorakit"] = AdapterState()
    try:
        add_adapter(model, adapter_name, cfg)
    except Exception:
        del model.__dict__["_lorakit"]
        raise
    set_adapter(model, adapter_name)
    return model


def add_adapter(model: nn.Module, adapter_name: str, cfg: LoraConfig, *, initialize: bool = True) -> None:
    """Add another adapter beside the existing ones; it stays inactive until ``set_adapter``.

    ``initialize=False`` leaves the new A/B tensors uninitialised (and torch's random generator
    untouched) for a caller that overwrites them all at once, as the adapter loader does; residual
    inits (PiSSA, OLoRA), which change the base weights, are always run. Such an adapter may take
    over the A/B modules an adapter deleted with ``recycle=True`` left on its layers."""
    attach_adapter(model, adapter_name, cfg, initialize=initialize)


AdapterModules = tuple[list[tuple[str, nn.Module]], list[tuple[str, ModulesToSave]]]


def attach_adapter(
    model: nn.Module, adapter_name: str, cfg: LoraConfig, *, initialize: bool = True
) -> AdapterModules:
    """``add_adapter``, returning ``adapter_modules(model)`` as it stands afterwards (for a caller
    that walks them next, like the loader: one walk of the model fewer per load)."""
    check_adapter_name(adapter_name)
    if not isinstance(cfg, LoraConfig):
        raise ConfigError(f"expected a LoraConfig, got {type(cfg).__name__}")
    state = model.__dict__.get("_lorakit") or AdapterState()
    if adapter_name in state.configs:
        raise ConfigError(f"adapter {adapter_name!r} already exists on this model")
    targets = resolve_targets(model, cfg)  # raises before anything changes
    missing = [m for m in cfg.saved_modules() if not _find_saved_module(model, m)]
    if missing:
        raise TargetError(f"modules_to_save: {missing} match no module of the model")
    layers, saved = adapter_modules(model)
    wrapped = dict(layers)
    nested = [n for n in wrapped if inside_any(n, cfg.saved_modules())]
    if nested:
        raise TargetError(
            f"modules_to_save: {nested[0]} already holds a LoRA adapter; a module trained in full "
            "cannot contain LoRA layers"
        )
    check_variant_targets(cfg, targets, wrapped)
    # Build every new wrapper first: wrap() may still refuse a module (e.g. a grouped conv).
    fresh = {name: wrap(module, name) for name, module in targets if name not in wrapped}
    model.__dict__["_lorakit"] = state
    if not state.configs:
        _set_requires_grad(model, False)
    for name, _ in targets:
        layer = wrapped.get(name) or fresh[name]
        if name in fresh:
            replace_module(model, name, layer)
        layer.add_adapter(
            adapter_name,
            cfg.rank_for(name),
            cfg.scaling_for(name),
            cfg.dropout,
            cfg.init if initialize or cfg.init in RESIDUAL_INITS else NO_INIT,
        )
        setup_variants(layer, adapter_name, cfg)
        # Only the new adapter's tensors: the active adapter on a shared wrapper keeps training.
        for table in _adapter_tables(layer):
            if adapter_name in table:
                entry = table[adapter_name]  # a module, or a Parameter in an embedding's ParameterDict
                if isinstance(entry, nn.Module):
                    _set_requires_grad(entry, False)
                else:
                    entry.requires_grad_(False)
        # New modules start in training mode; follow the wrapped layer so an eval() model
        # does not silently run LoRA dropout at inference (only the new adapter's modules on a
        # wrapper that already exists: its other adapters' modules follow the model already).
        _follow_base_mode(layer, adapter_name, fresh=name in fresh)
    changed = bool(fresh)
    for name in _saved_module_names(model, cfg.saved_modules()):
        module = model.get_submodule(name)
        if not isinstance(module, ModulesToSave):
            module = ModulesToSave(module)
            replace_module(model, name, module)
            changed = True
        module.add_adapter(adapter_name)
        module.modules_to_save[adapter_name].requires_grad_(False)
        module.train(module.original_module.training)
    state.configs[adapter_name] = cfg
    # The walk before attaching still holds when no module was replaced (a server's loads).
    return adapter_modules(model) if changed else (layers, saved)


def _follow_base_mode(layer: nn.Module, adapter_name: str, fresh: bool) -> None:
    mode = layer.base_layer.training
    if fresh:
        layer.train(mode)
        return
    for table in layer.children():
        if isinstance(table, nn.ModuleDict) and adapter_name in table:
            for module in _walk(table[adapter_name]):
                if module.training != mode:  # recycled modules are set already
                    module.training = mode  # what train(mode) sets, without its per-module dispatch


def _walk(module: nn.Module) -> list[nn.Module]:
    """``module`` and every module under it (an adapter's A, B, dropout: usually no children),
    depth first; a plain loop (nested generators cost a load more than the work they did)."""
    out: list[nn.Module] = []
    stack = [module]
    while stack:
        m = stack.pop()
        out.append(m)
        stack.extend(c for c in reversed(m._modules.values()) if c is not None)
    return out


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters under ``module`` that require grad (each once), from a direct walk of the
    module tables (``named_parameters()``'s generator chain cost a model load several ms)."""
    seen: set[int] = set()
    out = []
    for m in _walk(module):
        for p in m._parameters.values():
            if p is not None and p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    """``module.requires_grad_(flag)``, walking the module's own tables directly: attaching an
    adapter does this for ~250 small modules, where ``parameters()``'s generator chain was the cost."""
    for m in _walk(module):
        for p in m._parameters.values():
            if p is not None and p.requires_grad != flag:
                p.requires_grad_(flag)


def _find_saved_module(model: nn.Module, spec: str) -> bool:
    return bool(_saved_module_names(model, [spec]))


def _saved_module_names(model: nn.Module, specs: list[str]) -> list[str]:
    if not specs:
        return []
    names = []
    for name, module in _named_modules_outside_tables(model):
        if (
            isinstance(module, LORA_TYPES)
            or ".modules_to_save." in f".{name}."
            or name.endswith(".original_module")
        ):
            continue
        if any(name == s or name.endswith("." + s) for s in specs):
            names.append(name)
    # Keep only outermost matches (a ModulesToSave wrapper and its contents share a suffix).
    return [n for n in names if not any(n.startswith(o + ".") for o in names)]


def set_adapter(model: nn.Module, adapter_name: str) -> None:
    """Make ``adapter_name`` the one adapter that runs and trains."""
    state = adapter_state(model)
    if adapter_name not in state.configs:
        raise ConfigError(f"no adapter named {adapter_name!r}; this model has {list(state.configs)}")
    cfg = state.configs[adapter_name]
    model.requires_grad_(False)
    route_to_adapter(model, adapter_name)
    for _, layer in lora_layers(model):
        for table in _adapter_tables(layer):
            if adapter_name in table:
                table[adapter_name].requires_grad_(True)
        if (
            cfg.bias == "lora_only"
            and adapter_name in layer.adapter_names()
            and getattr(layer.base_layer, "bias", None) is not None
        ):
            layer.base_layer.bias.requires_grad_(True)
    for _, module in saved_modules(model):
        if adapter_name in module.modules_to_save:
            module.modules_to_save[adapter_name].requires_grad_(True)
    if cfg.bias == "all":
        for name, param in model.named_parameters():
            other_copy = ".modules_to_save." in name and f".modules_to_save.{adapter_name}." not in name
            if name.endswith("bias") and ".original_module." not in name and not other_copy:
                param.requires_grad_(True)


def route_to_adapter(model: nn.Module, adapter_name: str, modules: AdapterModules | None = None) -> None:
    """Make ``adapter_name`` the adapter that runs, changing no ``requires_grad`` flag (the part
    of ``set_adapter`` an inference load needs; its flag walk costs more than the rest of it).
    ``modules``: ``adapter_modules(model)`` when the caller has it."""
    layers, saved = modules or adapter_modules(model)
    for _, layer in layers:
        layer.active_adapters = [adapter_name] if adapter_name in layer.adapter_names() else []
    for _, module in saved:
        module.active_adapters = [adapter_name] if adapter_name in module.modules_to_save else []
    adapter_state(model).active = adapter_name


_TABLES = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")


def _adapter_tables(layer: nn.Module) -> list[nn.ModuleDict | nn.ParameterDict]:
    # the tables are submodules: a dict look-up, not hasattr's failing nn.Module.__getattr__
    children = layer._modules
    return [children[t] for t in _TABLES if children.get(t) is not None]


def delete_adapter(
    model: nn.Module, adapter_name: str, *, unwrap: bool = True, recycle: bool = False
) -> None:
    """Remove one adapter; wrappers left with none are unwrapped back to their base module.

    ``unwrap=False`` keeps such wrappers in place, empty: an empty wrapper computes exactly its
    base module, and the next adapter on those layers is attached without rebuilding them (what
    a server that loads and evicts adapters all day wants; ``lorakit serve`` does this).
    ``recycle=True`` also keeps the adapter's A/B modules on each linear layer, for the next
    adapter loaded there with the same rank to take over instead of allocating its own (the loader
    overwrites every value). Only for a model no optimizer holds: those tensors live on."""
    state = adapter_state(model)
    if adapter_name not in state.configs:
        raise ConfigError(f"no adapter named {adapter_name!r}; this model has {list(state.configs)}")
    layers, saved = adapter_modules(model)  # unwrapping LoRA layers leaves ``saved`` as it is
    merged = [name for name, layer in layers if adapter_name in layer.merged_adapters]
    if merged:  # checked up front so a refusal leaves every layer as it was
        raise LorakitError(f"adapter {adapter_name!r} is merged into {merged[0]}: unmerge first")
    for name, layer in layers:
        if adapter_name in layer.adapter_names():
            if recycle and isinstance(layer, LoraLinear):
                layer.delete_adapter(adapter_name, keep_spare=True)
            else:
                layer.delete_adapter(adapter_name)
        if unwrap and not layer.adapter_names():
            replace_module(model, name, layer.base_layer)
    for name, module in saved:
        if adapter_name in module.modules_to_save:
            module.delete_adapter(adapter_name)
        if not module.adapter_names():
            replace_module(model, name, module.original_module)
    del state.configs[adapter_name]
    if state.active == adapter_name:
        state.active = None
        if state.configs:
            set_adapter(model, next(iter(state.configs)))
    if not state.configs:
        del model.__dict__["_lorakit"]


@contextlib.contextmanager
def disable_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model computes exactly what its base computes."""
    layers = [m for _, m in lora_layers(model)] + [m for _, m in saved_modules(model)]
    merged = [n for n, m in lora_layers(model) if m.merged_adapters]
    if merged:
        raise LorakitError(f"cannot disable adapters while merged (e.g. {merged[0]}): unmerge first")
    before = [m.disabled for m in layers]
    for m in layers:
        m.disabled = True
    try:
        yield model
    finally:
        for m, flag in zip(layers, before, strict=True):
            m.disabled = flag
