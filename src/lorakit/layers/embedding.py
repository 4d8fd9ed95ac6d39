"""LoRA around ``nn.Embedding``: the low-rank table is looked up like the base table."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lorakit.layers.base import NO_INIT, forget_adapter, init_bookkeeping, record_adapter


class LoraEmbedding(nn.Module):
    """h = base_layer(ids) + scaling * embed(ids, A^T) @ B^T.

    As in PEFT, A (r x num_embeddings) starts at zero and B (dim x r) random: the update is
    still zero at first, and ids look up rows of A^T, so A must be the factor that starts at zero.
    """

    def __init__(self, base_layer: nn.Embedding) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.num_embeddings, base_layer.embedding_dim
        self.lora_embedding_A = nn.ParameterDict()
        self.lora_embedding_B = nn.ParameterDict()
        init_bookkeeping(self)

    def add_adapter(self, name: str, r: int, scaling: float, dropout: float, init: str) -> None:
        device = self.base_layer.weight.device
        a = torch.zeros(r, self.in_features, device=device)
        b = torch.empty(self.out_features, r, device=device)
        if init == NO_INIT:
            pass
        elif init == "gaussian":
            nn.init.normal_(b, std=1.0 / r)
        else:
            nn.init.normal_(b)
        self.lora_embedding_A[name] = nn.Parameter(a)
        self.lora_embedding_B[name] = nn.Parameter(b)
        record_adapter(self, name, r, scaling)

    def delete_adapter(self, name: str) -> None:
        forget_adapter(self, name, (self.lora_embedding_A, self.lora_embedding_B))

    def adapter_names(self) -> list[str]:
        return list(self.lora_embedding_A.keys())

    def delta_weight(self, name: str) -> torch.Tensor:
        a, b = self.lora_embedding_A[name].float(), self.lora_embedding_B[name].float()
        return (b @ a).T * self.scaling[name]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(ids)
        if self.disabled:
            return result
        base = self.base_layer
        for name in self.active_adapters:
            if name in self.merged_adapters:
                continue
            a, b = self.lora_embedding_A[name], self.lora_embedding_B[name]
            looked_up = F.embedding(
                ids,
                a.T,
                base.padding_idx,
                base.max_norm,
                base.norm_type,
                base.scale_grad_by_freq,
                base.sparse,
            )
            result = result + (looked_up @ b.T * self.scaling[name]).to(result.dtype)
        return result
