"""Which modules a ``LoraConfig`` adapts: strict matching with helpful errors, and a dry run."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from torch import nn

import lorakit.patterns as bounded
from lorakit.config import ALL_LINEAR, LoraConfig
from lorakit.errors import TargetError
from lorakit.layers import LORA_TYPES, ModulesToSave, is_linear_like, is_supported
from lorakit.layers.dense import linear_features

# Output heads are never part of "all-linear": they map to the label/vocab space. A head may be
# a module holding several Linears (RoBERTa's classifier.dense / classifier.out_proj), so
# everything inside a head is excluded too. Hidden layers such as BERT's pooler stay in, as in PEFT.
OUTPUT_HEADS = ("lm_head", "classifier", "score", "qa_outputs")
_FIRST_INDEX = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


@dataclass(frozen=True)
class Target:
    """One module a config adapts, with what the adapter adds."""

    name: str
    kind: str
    in_features: int
    out_features: int
    r: int
    scaling: float
    added_params: int


def _matches(spec: list[str] | str, name: str) -> bool:
    if isinstance(spec, str):
        return bounded.fullmatch(spec, name)
    return any(name == s or name.endswith("." + s) for s in spec)


def base_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named modules as the user sees them: LoRA wrappers stand for the module they wrap."""
    out: list[tuple[str, nn.Module]] = []
    skip: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(s) for s in skip):
            continue
        if isinstance(module, LORA_TYPES):
            out.append((name, module.base_layer))
            skip.append(name + ".")
        elif isinstance(module, ModulesToSave):
            # it stands for the module it copies, so a further adapter can save that module too
            out.append((name, module.original_module))
            skip.append(name + ".")
        elif name:
            out.append((name, module))
    return out


def is_output_head(name: str, model: nn.Module, module: nn.Module) -> bool:
    """The model's output embeddings / LM head (or a wrapper of it): never adapted or quantized."""
    get_out = getattr(model, "get_output_embeddings", None)
    out_emb = get_out() if callable(get_out) else None
    if out_emb is not None and (out_emb is module or getattr(out_emb, "base_layer", None) is module):
        return True
    dotted = f".{name}."
    return any(f".{h}." in dotted for h in OUTPUT_HEADS)


def _layer_index(name: str, layers_pattern: str | None) -> int | None:
    if layers_pattern:
        m = re.search(rf"(?:^|\.){re.escape(layers_pattern)}\.(\d+)(?:\.|$)", name)
    else:
        m = _FIRST_INDEX.search(name)
    return int(m.group(1)) if m else None


def inside_any(name: str, specs: list[str]) -> bool:
    """Whether module ``name`` is, or lies inside, a module named by one of ``specs``."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(p == s or p.endswith("." + s) for p in prefixes for s in specs)


def resolve_targets(model: nn.Module, cfg: LoraConfig) -> list[tuple[str, nn.Module]]:
    """(name, base module) for every module ``cfg`` adapts. Strict: unmatched specs raise."""
    modules = base_modules(model)
    chosen: list[tuple[str, nn.Module]] = []
    for name, module in modules:
        if cfg.targets == ALL_LINEAR:
            hit = is_linear_like(module) and not is_output_head(name, model, module)
        else:
            hit = _matches(cfg.targets, name)
        if not hit or (cfg.exclude is not None and _matches(cfg.exclude, name)):
            continue
        if cfg.layers is not None and _layer_index(name, cfg.layers_pattern) not in cfg.layers:
            continue
        # A module trained fully (modules_to_save) gets no LoRA inside it, as in PEFT.
        if inside_any(name, cfg.saved_modules()):
            continue
        chosen.append((name, module))
    _check_specs_matched(cfg, modules, chosen)
    for name, module in chosen:
        if not is_supported(module):
            from lorakit.layers import wrap  # raises the unsupported-type error

            wrap(module, name)
    return chosen


def _check_specs_matched(
    cfg: LoraConfig, modules: list[tuple[str, nn.Module]], chosen: list[tuple[str, nn.Module]]
) -> None:
    names = [n for n, _ in modules]
    if isinstance(cfg.targets, list):
        chosen_names = [n for n, _ in chosen]
        for spec in cfg.targets:
            if not any(n == spec or n.endswith("." + spec) for n in chosen_names):
                raise TargetError(_no_match_message("targets", spec, names, cfg))
    elif not chosen:
        raise TargetError(_no_match_message("targets", cfg.targets, names, cfg))


def _no_match_message(field: str, spec: str, names: list[str], cfg: LoraConfig) -> str:
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    close = difflib.get_close_matches(spec.rsplit(".", 1)[-1], leaves, n=5, cutoff=0.4)
    if not close:
        close = difflib.get_close_matches(spec, names, n=5, cutoff=0.3)
    where = ""
    if cfg.layers is not None or cfg.exclude is not None or cfg.modules_to_save:
        where = (
            f" (after layers={cfg.layers}, exclude={cfg.exclude!r}, "
            f"modules_to_save={cfg.modules_to_save}, which get no LoRA)"
        )
    hint = f"; closest module names: {', '.join(close)}" if close else ""
    return f"{field}: {spec!r} matches no module of the model{where}{hint}"


def find_targets(model: nn.Module, cfg: LoraConfig) -> list[Target]:
    """Dry run of ``inject``: the modules ``cfg`` would adapt, their shapes and added parameters."""
    out = []
    for name, module in resolve_targets(model, cfg):
        if is_linear_like(module):
            fan_in, fan_out = linear_features(module)
        elif isinstance(module, nn.Embedding):
            fan_in, fan_out = module.num_embeddings, module.embedding_dim
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            fan_in, fan_out = module.in_channels, module.out_channels
        else:
            fan_in, fan_out = module.weight.shape[1], module.weight.shape[0]
        r = cfg.rank_for(name)
        kernel = 1
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            for k in module.kernel_size:
                kernel *= k
        added = r * fan_in * kernel + fan_out * r
        out.append(Target(name, type(module).__name__, fan_in, fan_out, r, cfg.scaling_for(name), added))
    return out
