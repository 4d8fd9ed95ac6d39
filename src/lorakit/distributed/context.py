"""Who am I in a torchrun job: process-group set-up from torchrun's variables, rank helpers.

torchrun (``python -m torch.distributed.run``) starts one process per device and tells each
its place through RANK, WORLD_SIZE and LOCAL_RANK (plus MASTER_ADDR/MASTER_PORT for the
rendezvous). A process started without them is a single-process run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lorakit.errors import LorakitError

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (a single-process run is rank 0 of a world of 1)."""

    rank: int = 0
    """Global rank, 0 .. world_size-1."""
    world_size: int = 1
    """Number of processes in the job."""
    local_rank: int = 0
    """Rank on this node; picks the GPU."""
    backend: str | None = None
    """Process-group backend (gloo on CPU, nccl on CUDA); None when not distributed."""

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def backend_for(device: torch.device) -> str:
    """nccl for CUDA devices (fast GPU collectives), gloo for everything else."""
    return "nccl" if device.type == "cuda" else "gloo"


def launched_by_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return all(k in env for k in _TORCHRUN_VARS)


def context_from_env(environ: Mapping[str, str] | None = None) -> DistContext:
    """Read torchrun's variables without touching the process group (pure; used by tests)."""
    env = os.environ if environ is None else environ
    if not launched_by_torchrun(env):
        return DistContext()
    try:
        rank, world, local = (int(env[k]) for k in _TORCHRUN_VARS)
    except ValueError as e:
        values = {k: env[k] for k in _TORCHRUN_VARS}
        raise LorakitError(f"torchrun variables must be integers, got {values}") from e
    if not (0 <= rank < world and 0 <= local < world):
        raise LorakitError(
            f"inconsistent torchrun variables RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}"
        )
    return DistContext(rank=rank, world_size=world, local_rank=local)


def local_device(device: torch.device, ctx: DistContext) -> torch.device:
    """One GPU per process: ``cuda`` becomes ``cuda:LOCAL_RANK`` in a torchrun job."""
    if device.type == "cuda" and ctx.is_distributed:
        return torch.device("cuda", ctx.local_rank)
    if device.type == "mps" and ctx.is_distributed:
        raise LorakitError("train.device: 'mps' cannot be used with torchrun; use cpu or cuda")
    return device


def init_distributed(device: torch.device) -> DistContext:
    """Join the torchrun job (idempotent); a plain single-process run returns rank 0 of 1."""
    ctx = context_from_env()
    if not ctx.is_distributed:
        return ctx
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(ctx.rank, ctx.world_size, ctx.local_rank, backend)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size() > 1:
        dist.barrier()
