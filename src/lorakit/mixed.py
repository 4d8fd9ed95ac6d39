"""Mixed-adapter forward passes: every row of a batch names its own adapter (or the base).

    with lorakit.mixed_adapters(model, ["sst2", None, "topics", "sst2"]):
        logits = model(**batch).logits      # row 0 and 3 through "sst2", row 1 the base, ...

Every LoRA layer applies each row's own A/B in the same pass (layers/mixed.py: per-row weight
stacks and two batched products), whatever the ranks and scalings; a ``modules_to_save`` module
(e.g. a classifier head) runs each row through its adapter's own copy. The model's active adapter
is ignored inside the block and comes back unchanged after it. Inference only: the adapters used
must be unmerged plain LoRA on Linear / GPT-2 Conv1D layers; DoRA adapters, and adapters on
embeddings or convolutions, are refused with an error before anything changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from lorakit.errors import ConfigError, LorakitError
from lorakit.layers import LoraLinear, ModulesToSave
from lorakit.layers.mixed import STRATEGIES, RowRouting
from lorakit.model import adapter_modules, adapter_state, has_adapters, lora_layers


def check_mixable(
    model: nn.Module, names: set[str], layers: list[tuple[str, nn.Module]] | None = None
) -> None:
    """Refuse (LorakitError) adapters the mixed forward cannot run; names the adapter and why.
    ``layers``: ``list(lora_layers(model))`` when the caller has it."""
    configs = adapter_state(model).configs if has_adapters(model) else {}
    for name in sorted(names):
        if name not in configs:
            raise ConfigError(f"no adapter named {name!r}; this model has {sorted(configs)}")
        if configs[name].use_dora:
            raise LorakitError(
                f"adapter {name!r} is a DoRA adapter; mixed-adapter batches support plain LoRA only "
                "(merge it into its own copy of the base, or serve it without mixing)"
            )
    for module_name, layer in lora_layers(model) if layers is None else layers:
        used = names & set(layer.adapter_names())
        if not used:
            continue
        if not isinstance(layer, LoraLinear):
            raise LorakitError(
                f"adapter {sorted(used)[0]!r} adapts {module_name} ({type(layer).__name__}); "
                "mixed-adapter batches support Linear and GPT-2 Conv1D layers only"
            )
        if layer.merged_adapters:
            raise LorakitError(f"{module_name} has merged adapters {layer.merged_adapters}: unmerge first")
        if layer.training and any(getattr(layer.lora_dropout[n], "p", 0.0) > 0 for n in used):
            raise LorakitError(
                f"{module_name} is in training mode with LoRA dropout; mixed-adapter forwards are for "
                "inference: call model.eval() first"
            )


class MixedBatch:
    """A reusable context: inside it, row i of every forward runs adapter ``adapters[i]``.

    Re-entering the same object reuses the per-layer gathered weights (while no gradient is
    recorded), so a decode loop keeps one ``MixedBatch`` while its rows stay the same, and passes
    the batch a new one ``replaces`` when they change (its buffers are reused).
    ``strategy`` is "gather" (per-row stacks + batched products, the default) or "segments"
    (one product pair per distinct adapter); see layers/mixed.py.
    """

    def __init__(
        self,
        model: nn.Module,
        adapters: Sequence[str | None],
        strategy: str = "gather",
        *,
        replaces: MixedBatch | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"mixed strategy {strategy!r} is unknown; use one of {sorted(STRATEGIES)}")
        rows = list(adapters)
        bad = [r for r in rows if r is not None and not isinstance(r, str)]
        if bad:
            raise ConfigError(f"row adapters must be adapter names or None, got {bad[0]!r}")
        layers, saved = adapter_modules(model)  # one walk of the model per batch composition
        check_mixable(model, {r for r in rows if r is not None}, layers)
        self.model = model
        self.adapters = rows
        self.routing = RowRouting(rows, STRATEGIES[strategy])
        if replaces is not None:  # its gathered weights' buffers are reused (it re-gathers if entered again)
            self.routing.take_buffers(replaces.routing)
        self._modules: list[Any] = [m for _, m in layers if isinstance(m, LoraLinear)]
        self._modules += [m for _, m in saved if isinstance(m, ModulesToSave)]

    def __enter__(self) -> MixedBatch:
        busy = [m for m in self._modules if m.row_routing is not None]
        if busy:
            raise LorakitError("mixed_adapters blocks cannot be nested on one model")
        for m in self._modules:
            m.row_routing = self.routing
        return self

    def __exit__(self, *exc: object) -> None:
        for m in self._modules:
            m.row_routing = None


def mixed_adapters(model: nn.Module, adapters: Sequence[str | None], strategy: str = "gather") -> MixedBatch:
    """Context manager: each row of the forwards inside runs its own adapter (None: the base)."""
    return MixedBatch(model, adapters, strategy)
