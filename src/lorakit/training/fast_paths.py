"""Which of lorakit's fast paths a run uses, applied to the model after LoRA is injected.

- ``train.frozen_fast_path``: frozen, unadapted ``nn.Linear`` layers become ``FrozenLinear``.
- ``train.lean_activations``: gated SiLU MLPs become ``GatedMLP``.
- ``train.chunked_lm_loss`` (causal_lm): the module the run trains (and the data-parallel
  strategy wraps) is ``CausalLMWithChunkedLoss(model)``, after a check on a real training batch
  that its loss equals the model's own.

Both are explicit module-tree changes; nothing is patched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lorakit.data.batching import Feature
from lorakit.fast_modules import wrap_frozen_layers, wrap_gated_mlps
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks import Task
from lorakit.training.causal_loss import CausalLMWithChunkedLoss, chunked_loss_problem

CHECK_EXAMPLES = 2
"""Training examples the start-up check of the chunked loss runs on."""


@dataclass
class FastPaths:
    """What ``apply_fast_paths`` did."""

    train_module: nn.Module
    """The module training forwards call (before any data-parallel wrapping)."""
    frozen_layers: list[str] = field(default_factory=list)
    """Layers now computed as ``FrozenLinear``."""
    gated_mlps: list[str] = field(default_factory=list)
    """MLPs now computed as ``GatedMLP``."""
    notes: list[str] = field(default_factory=list)
    """What the run should tell the user (a fast path that could not be used, and why)."""


def apply_fast_paths(
    config: RunConfig, task: Task, model: nn.Module, features: list[Feature], device: torch.device
) -> FastPaths:
    t = config.train
    frozen = wrap_frozen_layers(model) if t.frozen_fast_path else []
    mlps = wrap_gated_mlps(model) if t.lean_activations else []
    result = FastPaths(model, frozen, mlps)
    if config.task != "causal_lm" or not t.chunked_lm_loss:
        return result
    wrapper = CausalLMWithChunkedLoss(model, t.lm_loss_chunk_tokens)
    batch = task.collate(features[:CHECK_EXAMPLES])
    problem = chunked_loss_problem(wrapper, {k: v.to(device) for k, v in batch.items()})
    if problem:
        result.notes.append(f"train.chunked_lm_loss: not used, {problem}; training with the plain loss")
    else:
        result.train_module = wrapper
    return result
