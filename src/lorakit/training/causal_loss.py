"""A causal LM and its training loss as one module, the LM head and loss computed chunk by chunk.

``CausalLMWithChunkedLoss(model)`` is what a causal-LM run trains: its ``forward(**batch)``
computes the final hidden states with the model's own body (``model.base_model``), then the
shifted next-token cross-entropy through the output head with
``layers.chunked_loss.chunked_cross_entropy`` -- the loss transformers computes, without the
(tokens x vocabulary) logits tensor or its gradient. Because model and loss are one module, the
data-parallel strategy wraps this module (DDP's forward, FSDP's root gathering the head and
embeddings) and nothing bypasses the wrapped forward.

Only forwards that build a gradient take the chunked path; under ``torch.no_grad`` (evaluation)
``forward`` is the model's own, logits included, and ``generate`` is the model's.
:func:`chunked_loss_problem` checks once, on a real batch, that the chunked loss equals the
model's own loss; a model whose head is not a plain linear layer, or whose loss differs (e.g. a
logit soft-cap), trains with the plain loss instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from lorakit.layers.chunked_loss import IGNORE_INDEX, chunked_cross_entropy
from lorakit.layers.frozen import FrozenLinear

CHECK_TOLERANCE = 1e-4
"""Largest |chunked - plain| loss difference (relative to max(1, |loss|)) the start-up check accepts."""


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """Next-token targets, flattened: position t predicts labels[t + 1]; the last predicts nothing."""
    pad = torch.full_like(labels[:, :1], IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1).reshape(-1)


def output_head(model: nn.Module) -> nn.Linear | None:
    """The model's LM head when it is a plain linear layer (possibly on lorakit's frozen path)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if isinstance(head, FrozenLinear):
        head = head.base_layer
    return head if type(head) is nn.Linear else None


class CausalLMWithChunkedLoss(nn.Module):
    """``model`` (a transformers causal LM) plus its next-token loss, computed in chunks."""

    def __init__(self, model: nn.Module, chunk_rows: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.chunk_rows = chunk_rows

    @property
    def config(self) -> Any:
        return self.model.config

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The model's own generation (FSDP registers this as a forward method of the root)."""
        return self.model.generate(*args, **kwargs)

    def chunked_loss(self, labels: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """The model's causal-LM loss for ``labels`` (mean over the non-ignored next tokens)."""
        head = output_head(self.model)
        if head is None:
            raise TypeError(f"{type(self.model).__name__} has no plain linear output head")
        body = self.model.base_model
        if body is self.model:
            raise TypeError(f"{type(self.model).__name__} has no separate body (base_model)")
        out = body(**{"use_cache": False, **inputs})
        hidden = out[0]
        hidden = hidden.reshape(-1, hidden.shape[-1])
        return chunked_cross_entropy(hidden, head.weight, head.bias, shifted_targets(labels), self.chunk_rows)

    def forward(self, labels: torch.Tensor | None = None, **inputs: Any) -> Any:
        if labels is None or not torch.is_grad_enabled():
            return self.model(labels=labels, **inputs)
        return CausalLMOutput(loss=self.chunked_loss(labels, **inputs))


def chunked_loss_problem(wrapper: CausalLMWithChunkedLoss, batch: dict[str, torch.Tensor]) -> str | None:
    """Why the chunked loss cannot stand in for the model's own on ``batch``; None when it can.

    Runs both without gradients (the model in eval mode, so dropout draws nothing)."""
    if output_head(wrapper.model) is None:
        return f"{type(wrapper.model).__name__}'s output head is not a plain nn.Linear"
    was_training = wrapper.model.training
    wrapper.model.eval()
    try:
        with torch.no_grad():
            plain = float(wrapper.model(**batch).loss)
            chunked = float(wrapper.chunked_loss(**batch))
    except Exception as e:  # an architecture the body/head split does not fit
        return f"the chunked loss failed on this model ({type(e).__name__}: {e})"
    finally:
        wrapper.model.train(was_training)
    if not abs(plain - chunked) <= CHECK_TOLERANCE * max(1.0, abs(plain)):
        return f"the chunked loss {chunked:.6g} differs from the model's own {plain:.6g}"
    return None
