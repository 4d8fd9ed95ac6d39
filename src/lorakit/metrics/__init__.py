"""Evaluation metrics the way each field reports them.

- ``generation``: BLEU and chrF (sacrebleu, with signatures), ROUGE-L (rouge-score) and exact
  match on generated text, several references per prompt.
- ``entities``: entity-level precision / recall / F1 with seqeval, overall and per type, for
  the IOB1, IOB2, IOE1, IOE2, IOBES and BILOU tag schemes.
- ``confusion``: the confusion matrix of a classifier and its PNG.
- ``display``: metric dicts (scalars, signatures, per-type tables, matrices) as text.

This package depends on nothing else in lorakit but ``errors``; tasks, training and the CLI
import it.
"""

from lorakit.metrics.confusion import confusion_counts, write_confusion_png
from lorakit.metrics.display import format_metrics, scalar_metrics
from lorakit.metrics.entities import TAG_SCHEMES, entity_scores, entity_spans
from lorakit.metrics.generation import GENERATION_METRICS, generation_scores, group_references

__all__ = [
    "GENERATION_METRICS",
    "TAG_SCHEMES",
    "confusion_counts",
    "entity_scores",
    "entity_spans",
    "format_metrics",
    "generation_scores",
    "group_references",
    "scalar_metrics",
    "write_confusion_png",
]
