"""The dependency-free IOB decoder (used for predict/serving without seqeval) equals seqeval's."""

from __future__ import annotations

import random

import pytest

from lorakit.metrics.entities import entity_spans, iob_spans

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]


@pytest.mark.parametrize("seed", range(5))
def test_iob_spans_equal_seqeval_lenient_decoding(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        tags = [rng.choice(TAGS) for _ in range(rng.randint(0, 12))]
        assert iob_spans(tags) == entity_spans(tags, None), tags


def test_iob_spans_by_hand() -> None:
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-ORG"]
    assert iob_spans(tags) == [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 7)]
