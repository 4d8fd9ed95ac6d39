"""Length-grouped batches: every example once per epoch, deterministic, homogeneous lengths."""

from __future__ import annotations

import random

from lorakit.data.batching import epoch_batches, pad_features


def test_each_example_once_and_deterministic() -> None:
    lengths = [random.Random(i).randrange(1, 200) for i in range(1000)]
    a = epoch_batches(lengths, 16, seed=3, epoch=0, group_by_length=True)
    assert sorted(i for b in a for i in b) == list(range(1000))
    assert a == epoch_batches(lengths, 16, seed=3, epoch=0, group_by_length=True)
    assert a != epoch_batches(lengths, 16, seed=3, epoch=1, group_by_length=True)


def test_grouping_reduces_padding() -> None:
    lengths = [random.Random(i).randrange(1, 200) for i in range(1000)]

    def padding(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    grouped = epoch_batches(lengths, 16, 0, 0, group_by_length=True)
    plain = epoch_batches(lengths, 16, 0, 0, group_by_length=False)
    assert padding(grouped) < padding(plain) / 5


def test_pad_features_uses_ignore_index_for_labels() -> None:
    batch = pad_features(
        [{"input_ids": [5, 6, 7], "labels": [1, 2, 3]}, {"input_ids": [5], "labels": [1]}], pad_id=0
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[1, 2, 3], [1, -100, -100]]
    left = pad_features([{"input_ids": [5, 6]}, {"input_ids": [7]}], pad_id=0, side="left")
    assert left["input_ids"].tolist() == [[5, 6], [0, 7]]
