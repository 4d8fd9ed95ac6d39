"""Pure sharding arithmetic: every example once, equal-length rank sequences, exact loss weights."""

from __future__ import annotations

import pytest
import torch

from lorakit.distributed import shard_batches, shard_eval_batches, split_sizes


@pytest.mark.parametrize("n,world", [(8, 2), (7, 2), (5, 3), (1, 2), (2, 4), (9, 4)])
def test_split_sizes_cover_and_balance(n: int, world: int) -> None:
    sizes = split_sizes(n, world)
    assert sum(sizes) == n and len(sizes) == world
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("world", [1, 2, 3])
def test_pieces_reassemble_global_batches_in_order(world: int) -> None:
    batches = [[4, 1, 7, 0], [3, 5, 2], [6]]
    per_rank = [shard_batches(batches, r, world) for r in range(world)]
    assert len({len(s) for s in per_rank}) == 1
    for step, batch in enumerate(batches):
        pieces = [per_rank[r][step] for r in range(world)]
        assert all(p.indices for p in pieces)
        real = [i for p in pieces if p.loss_scale > 0 for i in p.indices]
        assert real == batch


@pytest.mark.parametrize("n,world", [(8, 2), (7, 2), (5, 3), (1, 2), (2, 4)])
def test_loss_scales_make_rank_average_the_global_mean(n: int, world: int) -> None:
    g = torch.Generator().manual_seed(n * 10 + world)
    values = torch.randn(n, generator=g, dtype=torch.float64)
    batch = list(range(n))
    # DDP/FSDP average the ranks' gradients: (1/world) * sum of scaled per-rank means.
    ranks = [shard_batches([batch], r, world)[0] for r in range(world)]
    averaged = sum(s.loss_scale * values[s.indices].mean() for s in ranks) / world
    assert torch.allclose(averaged, values.mean())


def test_even_split_scale_is_exactly_one() -> None:
    assert {s.loss_scale for r in range(4) for s in shard_batches([list(range(8))], r, 4)} == {1.0}


def test_bad_rank_is_refused() -> None:
    with pytest.raises(ValueError):
        shard_batches([[0, 1]], 2, 2)


@pytest.mark.parametrize("nbatches,world", [(5, 2), (4, 2), (1, 3), (7, 4)])
def test_eval_shards_count_each_example_once(nbatches: int, world: int) -> None:
    batches = [[2 * b, 2 * b + 1] for b in range(nbatches)]
    per_rank = [shard_eval_batches(batches, r, world) for r in range(world)]
    assert len({len(s) for s in per_rank}) == 1
    kept = sorted(i for shards in per_rank for s in shards if s.keep for i in s.indices)
    assert kept == list(range(2 * nbatches))
