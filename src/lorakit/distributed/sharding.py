"""Which examples each rank runs: global batches cut into one deterministic piece per rank.

The loop draws *global* micro-batches (per-device batch x world size) exactly as a
single-process run with that batch size would, then every rank takes its contiguous piece.
So a distributed run sees the same examples per optimizer step as the equivalent
single-process run, every rank's sequence is a pure function of (seed, epoch, rank), and all
ranks run the same number of micro-batches (collectives never wait on a rank that ran out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    """One rank's part of one global micro-batch."""

    indices: list[int]
    """Dataset indices this rank runs (never empty, so every rank runs forward and backward)."""
    loss_scale: float
    """Factor for this rank's mean loss so that the gradient average over ranks (what DDP and
    FSDP compute) equals the gradient of the mean over the whole global batch: n_rank * world / n.
    1.0 when the batch splits evenly; 0.0 for a stand-in piece on a rank left without examples."""


def split_sizes(n: int, world: int) -> list[int]:
    """Sizes of ``world`` contiguous pieces of ``n`` items, differing by at most one."""
    base, extra = divmod(n, world)
    return [base + (r < extra) for r in range(world)]


def shard_batch(global_batch: Sequence[int], rank: int, world: int) -> Shard:
    if not global_batch:
        raise ValueError("cannot shard an empty batch")
    sizes = split_sizes(len(global_batch), world)
    start = sum(sizes[:rank])
    mine = list(global_batch[start : start + sizes[rank]])
    if not mine:
        # A short last batch with fewer examples than ranks: run one example with zero weight
        # so this rank still joins the gradient all-reduce, without changing the result.
        return Shard([global_batch[0]], 0.0)
    return Shard(mine, len(mine) * world / len(global_batch))


def shard_batches(global_batches: Sequence[Sequence[int]], rank: int, world: int) -> list[Shard]:
    """This rank's piece of every global micro-batch, in order."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of {world}")
    return [shard_batch(b, rank, world) for b in global_batches]


@dataclass(frozen=True)
class EvalShard:
    """One evaluation batch of one rank."""

    indices: list[int]
    keep: bool
    """False for padding batches, run only so that every rank calls forward equally often (FSDP
    all-gathers parameters in every forward); their outputs are discarded."""


def shard_eval_batches(batches: Sequence[Sequence[int]], rank: int, world: int) -> list[EvalShard]:
    """Round-robin evaluation batches over ranks, padded to the same count on every rank.

    Each example is evaluated by exactly one rank, so gathered metrics count it exactly once.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world of {world}")
    mine = [EvalShard(list(b), True) for b in batches[rank::world]]
    rounds = -(-len(batches) // world)
    while len(mine) < rounds:
        mine.append(EvalShard(list(batches[0]), False))
    return mine
