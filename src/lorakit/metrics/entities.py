"""Entity-level scores of tag sequences with seqeval: overall and per entity type.

``scheme=None`` decodes entities the conlleval way (seqeval's default mode: an I- tag after O
or after another type starts an entity; IOB1, IOB2 and IOBES tags all decode); a named scheme
uses seqeval's strict mode for that scheme, where only well-formed entities count (BILOU needs
this: L- and U- tags are unknown to the lenient decoder).
"""

from __future__ import annotations

import sys
from typing import Any

from lorakit.errors import DataError
from lorakit.extras import available, require

TAG_SCHEMES: tuple[str, ...] = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")


def _seqeval() -> Any:
    feature = "entity scores (token_classification evaluation)"
    require("seqeval.metrics", feature)
    require("seqeval.scheme", feature)
    return sys.modules["seqeval"]


def _scheme_class(scheme: str) -> Any:
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; allowed: {list(TAG_SCHEMES)} or None")
    return getattr(_seqeval().scheme, scheme)


def entity_scores(gold: list[list[str]], pred: list[list[str]], scheme: str | None = None) -> dict[str, Any]:
    """precision / recall / f1 (micro over entities), and ``per_type``: {type: {precision,
    recall, f1, support}} where support counts gold entities of that type."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted")
    seqeval = _seqeval()
    kwargs: dict[str, Any] = {"output_dict": True, "zero_division": 0}
    if scheme is not None:
        kwargs.update(mode="strict", scheme=_scheme_class(scheme))
    try:
        report = seqeval.metrics.classification_report(gold, pred, **kwargs)
    except (KeyError, ValueError) as e:
        raise DataError(f"tags do not follow the {scheme} scheme: {e}") from None
    per_type = {
        kind: _row(row)
        for kind, row in sorted(report.items())
        if kind not in ("micro avg", "macro avg", "weighted avg")
    }
    micro = report.get("micro avg")
    overall = _row(micro) if micro else {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    return {
        "precision": overall["precision"],
        "recall": overall["recall"],
        "f1": overall["f1"],
        "per_type": per_type,
    }


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "f1": float(row["f1-score"]),
        "support": int(row["support"]),
    }


def entity_spans(tags: list[str], scheme: str | None = None) -> list[tuple[str, int, int]]:
    """(type, start, end) of each entity in one tag sequence, end exclusive, in order.

    Decoding tags (predict, serving) needs no extra: without seqeval, lenient IOB decoding is
    done here; scoring (``entity_scores``) and the strict schemes need seqeval."""
    if scheme is None and not available("seqeval"):
        return iob_spans(tags)
    seqeval = _seqeval()
    if scheme is None:
        from seqeval.metrics.sequence_labeling import get_entities

        return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]
    try:
        found = seqeval.scheme.Entities([list(tags)], _scheme_class(scheme)).entities[0]
    except (KeyError, ValueError) as e:
        raise DataError(f"tags do not follow the {scheme} scheme: {e}") from None
    return sorted(((e.tag, e.start, e.end) for e in found), key=lambda s: (s[1], s[2]))


def iob_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """Lenient IOB1/IOB2 decoding (conlleval's): B-X starts an entity, I-X continues one of type X
    and starts one after O or another type; anything else ends the current entity."""
    out: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            out.append((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return out
