"""seqeval entity scores: hand-checked cases for the lenient (conlleval) decoding and the strict
IOB1 / IOB2 / IOBES / BILOU schemes, overall and per entity type."""

from __future__ import annotations

import pytest

from lorakit.errors import DataError
from lorakit.metrics import entity_scores, entity_spans


def test_partial_match_counts_as_wrong() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-MISC"]]
    s = entity_scores(gold, pred)
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["per_type"] == {
        "LOC": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},
        "ORG": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
    }
    assert entity_scores(gold, gold)["f1"] == 1.0


def test_lenient_spans_iob1_iob2_iobes() -> None:
    # An I- tag after O starts an entity (IOB1 and conlleval); E-/S- close / are single entities.
    assert entity_spans(["I-PER", "I-PER", "B-PER"]) == [("PER", 0, 2), ("PER", 2, 3)]
    assert entity_spans(["B-PER", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 2)]
    assert entity_spans(["B-ORG", "E-ORG", "S-LOC", "O"]) == [("ORG", 0, 2), ("LOC", 2, 3)]
    assert entity_spans(["O", "O"]) == []


def test_strict_iob2_drops_ill_formed_entities() -> None:
    gold = [["B-PER", "I-PER", "O"]]
    pred = [["I-PER", "I-PER", "O"]]  # no B-: well formed only in IOB1 / the lenient decoding
    assert entity_scores(gold, pred)["f1"] == 1.0
    assert entity_scores(gold, pred, "IOB2")["f1"] == 0.0
    assert entity_scores(pred, pred, "IOB1")["f1"] == 1.0  # I- starts an entity in IOB1
    assert entity_scores(gold, pred, "IOB1")["recall"] == 0.0  # B- after O is ill formed in IOB1
    assert entity_spans(["I-PER", "I-PER", "O"], "IOB2") == []


def test_iob1_b_only_between_adjacent_same_type() -> None:
    tags = ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]
    assert entity_spans(tags, "IOB1") == [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5)]


def test_iobes_and_bilou_strict() -> None:
    iobes = ["B-PER", "I-PER", "E-PER", "S-LOC", "O", "B-ORG", "E-ORG"]
    bilou = ["B-PER", "I-PER", "L-PER", "U-LOC", "O", "B-ORG", "L-ORG"]
    want = [("PER", 0, 3), ("LOC", 3, 4), ("ORG", 5, 7)]
    assert entity_spans(iobes, "IOBES") == want
    assert entity_spans(bilou, "BILOU") == want
    # A prediction that never closes its entity (B- I- without E-) does not count in IOBES.
    pred = ["B-PER", "I-PER", "I-PER", "S-LOC", "O", "B-ORG", "E-ORG"]
    s = entity_scores([iobes], [pred], "IOBES")
    assert s["precision"] == pytest.approx(2 / 2) and s["recall"] == pytest.approx(2 / 3)
    assert s["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    b = entity_scores([bilou], [["B-PER", "I-PER", "L-PER", "U-LOC", "O", "U-ORG", "O"]], "BILOU")
    assert b["precision"] == pytest.approx(2 / 3) and b["recall"] == pytest.approx(2 / 3)


def test_scheme_errors() -> None:
    with pytest.raises(ValueError, match="unknown tag scheme"):
        entity_scores([["O"]], [["O"]], "BIO3")
    with pytest.raises(ValueError, match="sequence 0"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(DataError, match="IOB2 scheme"):
        entity_scores([["X-PER"]], [["O"]], "IOB2")
