"""Scores of generated text against one or several references per prompt.

BLEU and chrF are sacrebleu's corpus scores (with a variable number of references per segment
when prompts have different reference counts) and their signatures; ROUGE-L is rouge-score's
F-measure, the best over a prompt's references, averaged over prompts; exact match counts a
hypothesis equal (after stripping) to any of its references. Scores are on sacrebleu's 0-100
scale except exact_match, a fraction in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lorakit.extras import require

GENERATION_METRICS: tuple[str, ...] = ("bleu", "chrf", "rouge_l", "exact_match")


def group_references(
    prompts: Sequence[str], targets: Sequence[str], limit: int | None = None
) -> tuple[list[int], list[list[str]]]:
    """Records sharing a prompt become one prompt with all their targets as references.

    Returns (index of each distinct prompt's first record, its references), in order of first
    appearance, at most ``limit`` prompts (None: all). Each prompt is counted once.
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    slots: dict[str, int] = {}
    firsts: list[int] = []
    refs: list[list[str]] = []
    for i, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
        slot = slots.get(prompt)
        if slot is None:
            if limit is not None and len(firsts) >= limit:
                continue
            slot = slots[prompt] = len(firsts)
            firsts.append(i)
            refs.append([])
        refs[slot].append(target)
    return firsts, refs


def reference_streams(refs: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's layout: stream k holds every prompt's k-th reference (None where it has fewer)."""
    depth = max((len(r) for r in refs), default=0)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(depth)]


def _sacrebleu() -> Any:
    return require("sacrebleu", "BLEU / chrF")


def _rouge_scorer() -> Any:
    rouge_scorer = require("rouge_score.rouge_scorer", "ROUGE-L")
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def generation_scores(
    hyps: Sequence[str], refs: Sequence[Sequence[str]], metrics: Sequence[str]
) -> dict[str, Any]:
    """``metrics`` (names from GENERATION_METRICS) of ``hyps[i]`` against ``refs[i]``.

    BLEU and chrF come with ``bleu_signature`` / ``chrf_signature``; ``references`` says how
    many references the prompts had in total and ``prompts`` how many prompts were scored.
    """
    unknown = [m for m in metrics if m not in GENERATION_METRICS]
    if unknown:
        raise ValueError(f"unknown generation metric(s) {unknown}; allowed: {list(GENERATION_METRICS)}")
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference lists")
    if not hyps:
        return {}
    if any(not r for r in refs):
        raise ValueError("every prompt needs at least one reference")
    out: dict[str, Any] = {}
    if "bleu" in metrics or "chrf" in metrics:
        sb = _sacrebleu()
        streams = reference_streams(refs)
        for name, scorer in (("bleu", sb.BLEU()), ("chrf", sb.CHRF())):
            if name in metrics:
                out[name] = float(scorer.corpus_score(list(hyps), streams).score)
                out[f"{name}_signature"] = str(scorer.get_signature())
    if "rouge_l" in metrics:
        scorer = _rouge_scorer()
        best = [scorer.score_multi(list(r), h)["rougeL"].fmeasure for h, r in zip(hyps, refs, strict=True)]
        out["rouge_l"] = 100.0 * sum(best) / len(best)
    if "exact_match" in metrics:
        hits = sum(h.strip() in {t.strip() for t in r} for h, r in zip(hyps, refs, strict=True))
        out["exact_match"] = hits / len(hyps)
    out["prompts"] = len(hyps)
    out["references"] = sum(len(r) for r in refs)
    return out
