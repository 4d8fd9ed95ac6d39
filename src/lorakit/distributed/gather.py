"""Collectives the loop needs around DDP/FSDP: full tensors from shards, summed metrics, rows.

Everything here is a no-op in a single process. Functions marked *collective* must be called
by every rank in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist

from lorakit.distributed.context import world_size


def is_sharded(t: torch.Tensor) -> bool:
    """A DTensor (FSDP2 parameter, gradient or optimizer state), recognised by its API."""
    return hasattr(t, "full_tensor") and hasattr(t, "placements")


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (collective for a DTensor: all ranks must call it)."""
    # clone: the gathered tensor can be a view into a larger buffer, which safetensors refuses.
    return t.full_tensor().clone() if is_sharded(t) else t


def shard_like(full: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``full`` laid out as ``ref`` is: this rank's shard as a DTensor when ``ref`` is one.

    Every rank holds the same ``full`` (read from the same checkpoint), so each takes its own
    piece locally, without communication.
    """
    if not is_sharded(ref):
        return full.to(device=ref.device, dtype=ref.dtype)
    from torch.distributed.tensor import distribute_tensor

    full = full.to(device=ref.to_local().device, dtype=ref.dtype)
    return distribute_tensor(full, ref.device_mesh, ref.placements, src_data_rank=None)


def all_reduce_sums(values: Mapping[str, float], device: torch.device | None = None) -> dict[str, float]:
    """Sum each named number over ranks (collective). Keys must be the same on every rank."""
    if world_size() == 1:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist(), strict=True))


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (collective); row counts may differ."""
    if world_size() == 1:
        return t
    count = torch.tensor([t.shape[0]], dtype=torch.long, device=t.device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = t.new_zeros((longest, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts, strict=True)])


def broadcast_flag(flag: bool, device: torch.device | None = None) -> bool:
    """Rank 0's decision (e.g. early stopping) on every rank (collective)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def gather_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Full CPU copies of every tensor (collective when any is sharded; same keys on all ranks)."""
    return {k: full_tensor(v.detach()).to("cpu", copy=True) for k, v in state.items()}


def reshard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After ``load_state_dict`` of full (gathered) tensors into an optimizer over FSDP
    parameters, lay each per-parameter state tensor out like its parameter again."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                full = torch.is_tensor(value) and not is_sharded(value)
                if is_sharded(param) and full and tuple(value.shape) == tuple(param.shape):
                    state[key] = shard_like(value, param)


@torch.no_grad()
def copy_full_into(params: Mapping[str, torch.Tensor], full: Mapping[str, torch.Tensor]) -> None:
    """Load full tensors (e.g. a checkpoint's adapter) into live, possibly sharded, parameters."""
    for key, param in params.items():
        param.copy_(shard_like(full[key], param))


def all_reduce_rows(t: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Combine per-example rows that each rank filled for its own examples (zeros elsewhere):
    every row comes from exactly one rank, so the sum over ranks is exact (collective)."""
    if world_size() == 1:
        return t
    summed = t.to(device if device is not None else t.device, copy=True)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed.to(t.device)
