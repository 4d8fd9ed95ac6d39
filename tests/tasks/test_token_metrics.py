"""Entity-level scores follow the seqeval (default, IOB2) conventions on hand-checked cases."""

from __future__ import annotations

import pytest

from lorakit.tasks.token_classification import entity_scores, spans


def test_spans() -> None:
    assert spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 2), ("LOC", 3, 4)}
    assert spans(["I-PER", "I-PER", "B-PER"]) == {("PER", 0, 2), ("PER", 2, 3)}
    assert spans(["B-PER", "I-LOC"]) == {("PER", 0, 1), ("LOC", 1, 2)}
    assert spans(["O", "O"]) == set()


def test_scores_partial_match_counts_as_wrong() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-MISC"]]
    s = entity_scores(gold, pred)
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert entity_scores(gold, gold)["f1"] == 1.0
