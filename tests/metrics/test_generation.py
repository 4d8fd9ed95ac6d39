"""Generation metrics: prompts grouped with all their references, BLEU / chrF equal to sacrebleu's
multi-reference corpus scores, ROUGE-L and exact match against hand-computed values."""

from __future__ import annotations

import pytest
import sacrebleu

from lorakit.metrics import generation_scores, group_references
from lorakit.metrics.generation import reference_streams

# An E2E-like fixture: several references per meaning representation, interleaved.
PROMPTS = ["mr A", "mr B", "mr A", "mr C", "mr B", "mr A"]
TARGETS = [
    "The Eagle serves French food.",
    "Aromi is a coffee shop.",
    "French food is served at The Eagle.",
    "Zizzi is cheap.",
    "Aromi is a coffee shop near the river.",
    "The Eagle is a French restaurant.",
]
HYPS = [
    "The Eagle serves French food in the city.",
    "Aromi is a coffee shop by the river.",
    "Zizzi is a pub.",
]


def test_group_references_counts_each_prompt_once() -> None:
    firsts, refs = group_references(PROMPTS, TARGETS)
    assert firsts == [0, 1, 3]
    assert refs == [[TARGETS[0], TARGETS[2], TARGETS[5]], [TARGETS[1], TARGETS[4]], [TARGETS[3]]]
    firsts, refs = group_references(PROMPTS, TARGETS, limit=2)  # limit counts prompts, not records
    assert firsts == [0, 1] and [len(r) for r in refs] == [3, 2]


def test_reference_streams_pad_with_none() -> None:
    _, refs = group_references(PROMPTS, TARGETS)
    streams = reference_streams(refs)
    assert streams == [
        [TARGETS[0], TARGETS[1], TARGETS[3]],
        [TARGETS[2], TARGETS[4], None],
        [TARGETS[5], None, None],
    ]


def test_multi_reference_bleu_and_chrf_equal_sacrebleu() -> None:
    _, refs = group_references(PROMPTS, TARGETS)
    got = generation_scores(HYPS, refs, ["bleu", "chrf"])
    streams = reference_streams(refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score, abs=1e-9)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, streams).score, abs=1e-9)
    # More references can only add matches: the score is above the first-reference-only one.
    single = sacrebleu.corpus_bleu(HYPS, [[r[0] for r in refs]]).score
    assert got["bleu"] > single
    # Variable reference counts are declared in the signature (nrefs:var), per sacrebleu.
    assert got["bleu_signature"].startswith("nrefs:var|") and "chrf_signature" in got
    assert got["prompts"] == 3 and got["references"] == 6


def test_bleu_hand_computed() -> None:
    # hyp "a b c d e" vs refs {"a b c d f", "x b c d e"}: clipped n-gram matches with the
    # best reference per n-gram: 1-grams 5/5, 2-grams 4/4, 3-grams 3/3, 4-grams 2/2 -> 100,
    # while either reference alone misses one n-gram of each order.
    got = generation_scores(["a b c d e"], [["a b c d f", "x b c d e"]], ["bleu"])
    assert got["bleu"] == pytest.approx(100.0)
    alone = generation_scores(["a b c d e"], [["a b c d f"]], ["bleu"])
    # precisions 4/5, 3/4, 2/3, 1/2; geometric mean = (1/5)^(1/4); brevity penalty 1
    assert alone["bleu"] == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)


def test_rouge_l_best_reference_averaged() -> None:
    # "a b c d" vs "a c d e": LCS "a c d" = 3, P = R = 3/4 -> F = 0.75; vs "a b c d": 1.0.
    one = generation_scores(["a b c d"], [["a c d e"]], ["rouge_l"])
    assert one["rouge_l"] == pytest.approx(75.0)
    best = generation_scores(["a b c d", "x y"], [["a c d e", "a b c d"], ["x z"]], ["rouge_l"])
    # second prompt: LCS 1, P = R = 1/2 -> F = 0.5; mean of (1.0, 0.5)
    assert best["rouge_l"] == pytest.approx(75.0)


def test_exact_match_against_any_reference() -> None:
    got = generation_scores([" yes ", "no"], [["maybe", "yes"], ["nope"]], ["exact_match"])
    assert got["exact_match"] == 0.5 and "bleu" not in got


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown generation metric"):
        generation_scores(["a"], [["a"]], ["meteor"])
    with pytest.raises(ValueError, match="hypotheses"):
        generation_scores(["a", "b"], [["a"]], ["bleu"])
    assert generation_scores([], [], ["bleu"]) == {}
