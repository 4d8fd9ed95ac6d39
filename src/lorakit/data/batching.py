"""Length-grouped batches (less padding) with a deterministic order per epoch, and padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch

Feature = dict[str, list[int] | int]
PAD_VALUES = {"labels": -100, "attention_mask": 0, "token_type_ids": 0}


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """Indices of every micro-batch of one epoch, in order. A pure function of its arguments,
    so a resumed run (or another data-parallel rank) draws the same batches."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    # Sort within mega-batches (as HF's LengthGroupedSampler) so batches are homogeneous in
    # length but the epoch still mixes lengths; then shuffle the batches themselves.
    mega = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation order: sorted by length (fast), deterministic; results are re-ordered by index."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pad_features(
    features: list[Feature], pad_id: int, side: str = "right", pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Stack features into tensors, padding list-valued keys to the longest in the batch."""
    out: dict[str, torch.Tensor] = {}
    for key in features[0]:
        values = [f[key] for f in features]
        if not isinstance(values[0], list):
            out[key] = torch.tensor(values)
            continue
        width = max(len(v) for v in values)
        if pad_to_multiple_of:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
        fill = PAD_VALUES.get(key, pad_id)
        rows = []
        for v in values:
            pad = [fill] * (width - len(v))
            rows.append(pad + v if side == "left" else v + pad)
        out[key] = torch.tensor(rows, dtype=torch.long)
    return out
