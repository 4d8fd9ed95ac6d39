"""Where each adapter tensor lives in a model, under the key PEFT uses for it in files.

lorakit's wrappers mirror PEFT's module layout (``base_layer``, ``lora_A.<name>``,
``modules_to_save.<name>``), so a file key is the module path with the adapter name removed
and ``base_model.model.`` in front.
"""

from __future__ import annotations

from torch import nn

from lorakit.layers import LoraEmbedding
from lorakit.model import AdapterModules, adapter_modules, adapter_state, lora_layers, saved_modules

PREFIX = "base_model.model."
_SKIP_BIAS = (".lora_", ".original_module.", ".modules_to_save.")


def adapter_entries(
    model: nn.Module, name: str, modules: AdapterModules | None = None
) -> dict[str, nn.Parameter]:
    """{file key: live parameter or buffer} for everything adapter ``name`` saves; ``modules`` is
    ``adapter_modules(model)`` when the caller has it."""
    cfg = adapter_state(model).configs[name]
    out: dict[str, nn.Parameter] = {}
    layers, saved = modules or adapter_modules(model)
    for path, layer in layers:
        if name not in layer.adapter_names():
            continue
        if isinstance(layer, LoraEmbedding):
            out[f"{PREFIX}{path}.lora_embedding_A"] = layer.lora_embedding_A[name]
            out[f"{PREFIX}{path}.lora_embedding_B"] = layer.lora_embedding_B[name]
        else:
            out[f"{PREFIX}{path}.lora_A.weight"] = layer.lora_A[name].weight
            out[f"{PREFIX}{path}.lora_B.weight"] = layer.lora_B[name].weight
            if name in getattr(layer, "lora_magnitude_vector", {}):
                out[f"{PREFIX}{path}.lora_magnitude_vector"] = layer.lora_magnitude_vector[name].weight
        bias = getattr(layer.base_layer, "bias", None)
        if cfg.bias == "lora_only" and bias is not None:
            out[f"{PREFIX}{path}.base_layer.bias"] = bias
    for path, module in saved:
        if name in module.modules_to_save:
            for key, value in module.modules_to_save[name].state_dict(keep_vars=True).items():
                out[f"{PREFIX}{path}.{key}"] = value
    if cfg.bias == "all":
        for pname, param in model.named_parameters():
            if pname.endswith("bias") and not any(s in pname for s in _SKIP_BIAS):
                out[PREFIX + pname] = param
    return out


def adapted_modules(model: nn.Module, name: str) -> list[str]:
    return [path for path, layer in lora_layers(model) if name in layer.adapter_names()]


def saved_module_names(model: nn.Module, name: str) -> list[str]:
    return [path for path, m in saved_modules(model) if name in m.modules_to_save]


def module_of_key(key: str) -> str | None:
    """The adapted module a LoRA tensor key belongs to (None for other keys)."""
    body = key.removeprefix(PREFIX)
    for marker in (
        ".lora_A.",
        ".lora_B.",
        ".lora_embedding_A",
        ".lora_embedding_B",
        ".lora_magnitude_vector",
    ):
        if marker in body + ".":
            return body.split(marker.rstrip("."))[0].rstrip(".")
    return None
