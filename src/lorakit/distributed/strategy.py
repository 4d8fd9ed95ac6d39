"""How the model is spread over ranks: one process, DDP, or FSDP2 ``fully_shard``.

Small strategy objects selected from ``train.strategy`` and the world size; the training loop
only calls ``wrap`` once and ``accumulating`` around every micro-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal, Protocol

import torch
from torch import nn

from lorakit.distributed.context import DistContext

StrategyName = Literal["ddp", "fsdp"]


class ParallelStrategy(Protocol):
    """What the loop needs from a way of running one model on several ranks."""

    name: str

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to call for training forwards (may be ``model`` itself, changed in place)."""
        ...

    def accumulating(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager[None]:
        """Context for one micro-batch's forward+backward; ``sync=False`` skips gradient
        communication (all but the last micro-batch of an accumulation window)."""
        ...


class SingleProcess:
    """No communication at all (world size 1)."""

    name = "single"

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        return model

    def accumulating(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class DataParallel:
    """DDP over the trainable parameters only: a full model copy per rank, LoRA gradients
    all-reduced once per optimizer step."""

    name = "ddp"

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        # Every rank loaded the same base from disk, so broadcasting the frozen weights (and
        # constant buffers) at start-up would only move gigabytes for nothing. DDP's reducer
        # already skips requires_grad=False parameters, so they are never all-reduced.
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        frozen += [n for n, _ in model.named_buffers()]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen)
        return DistributedDataParallel(
            model,
            device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=False,
            forward_sync_buffers=False,
        )

    def accumulating(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext() if sync else wrapped.no_sync()


class FullyShard:
    """FSDP2: every parameter (frozen base included) is split over ranks and gathered block by
    block during forward/backward, so a base bigger than one device's memory fits."""

    name = "fsdp"

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        mesh = init_device_mesh(device.type, (self.world_size,))
        for block in repeated_blocks(model):
            fully_shard(block, mesh=mesh)
        # The root too reshards after forward: evaluation runs forwards without a backward, and
        # a root left unsharded would expose gathered (later freed) tensors to checkpointing.
        fully_shard(model, mesh=mesh, reshard_after_forward=True)
        if callable(getattr(model, "generate", None)):
            # A root that wraps the model (model + loss) calls the model's generate, not its own
            # forward: gather the root's weights around the whole call.
            register_fsdp_forward_method(model, "generate")
        return model

    def accumulating(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager[None]:
        return _gradient_sync(wrapped, sync)


@contextlib.contextmanager
def _gradient_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    model.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks (items of the outermost ``nn.ModuleList`` s): FSDP's unit of gathering."""
    blocks: list[nn.Module] = []
    for child in model.children():
        if isinstance(child, nn.ModuleList):
            blocks.extend(child)
        else:
            blocks.extend(repeated_blocks(child))
    return blocks


def select_strategy(name: StrategyName, ctx: DistContext) -> ParallelStrategy:
    """The strategy for ``train.strategy`` in this job; one process needs no wrapping."""
    if not ctx.is_distributed:
        return SingleProcess()
    if name == "fsdp":
        return FullyShard(ctx.world_size)
    return DataParallel()


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model behind a DDP wrapper (FSDP2 changes the model in place, no wrapper)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def original_class_name(model: nn.Module) -> str:
    """The model's own class name, also after FSDP2 swapped in its ``FSDP<Name>`` subclass."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch built without distributed support
        return type(model).__name__
    return next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule)).__name__
