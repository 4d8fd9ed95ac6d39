"""The KV cache of a running batch whose rows join and leave between decode steps.

Rows are left-padded to one cache length; ``mask`` (rows, length) marks real positions and
``positions`` holds each row's next position id, so every row computes what it would alone.
Works on transformers' ``DynamicCache`` with full-attention layers (keys/values shaped
(rows, heads, length, head_dim)); anything else is refused with a clear error.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lorakit.errors import LorakitError


def _layers(cache: Any) -> list[Any]:
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise LorakitError(
            f"continuous batching needs a transformers DynamicCache, got {type(cache).__name__}"
        )
    for layer in layers:
        if getattr(layer, "is_sliding", False) or not hasattr(layer, "keys"):
            raise LorakitError(
                f"continuous batching supports full-attention KV caches only, not {type(layer).__name__}"
            )
    return layers


def _pad_left(t: torch.Tensor, length: int) -> torch.Tensor:
    extra = length - t.shape[-2]
    return t if extra == 0 else F.pad(t, (0, 0, extra, 0))


class BatchCache:
    """A model's KV cache for the running rows, plus their attention mask and next positions."""

    def __init__(self) -> None:
        self.cache: Any = None
        self.mask: torch.Tensor | None = None  # (rows, length) long
        self.positions: torch.Tensor | None = None  # (rows, 1) long

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def join(self, cache: Any, mask: torch.Tensor, positions: torch.Tensor) -> None:
        """Append rows (a prefilled cache with its mask and next positions) below the running ones."""
        if self.cache is None:
            _layers(cache)
            self.cache, self.mask, self.positions = cache, mask, positions
            return
        length = max(self.length, mask.shape[1])
        for mine, theirs in zip(_layers(self.cache), _layers(cache), strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, length), _pad_left(theirs.keys, length)])
            mine.values = torch.cat([_pad_left(mine.values, length), _pad_left(theirs.values, length)])
        pad = (length - self.length, 0)
        self.mask = torch.cat([F.pad(self.mask, pad), F.pad(mask, (length - mask.shape[1], 0))])
        self.positions = torch.cat([self.positions, positions])

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in that order); drop columns no remaining row uses."""
        if not rows:
            self.cache = self.mask = self.positions = None
            return
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        first = int(mask.any(0).int().argmax())  # leading columns that are padding in every row
        for layer in _layers(self.cache):
            layer.keys = layer.keys.index_select(0, index)[:, :, first:]
            layer.values = layer.values.index_select(0, index)[:, :, first:]
        self.mask = mask[:, first:]
        self.positions = self.positions.index_select(0, index)

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention_mask, position_ids) for one new token per row; extends the mask."""
        assert self.mask is not None and self.positions is not None
        self.mask = F.pad(self.mask, (0, 1), value=1)
        positions = self.positions
        self.positions = positions + 1
        return self.mask, positions
