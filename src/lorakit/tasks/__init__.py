"""The four tasks. Each module holds preprocessing, collation, metrics and prediction."""

from __future__ import annotations

from typing import Any

from lorakit.data.readers import Record
from lorakit.model_sources import ModelRef
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks.common import Task

# Metric names each task reports at evaluation, used to validate train.metric_for_best early.
TASK_METRICS = {
    "classification": ("loss", "accuracy", "macro_f1"),
    "token_classification": ("loss", "precision", "recall", "f1", "accuracy"),
    "causal_lm": ("loss", "perplexity", "bleu", "chrf", "rouge_l", "exact_match"),
    "seq2seq": ("loss", "perplexity", "bleu", "chrf", "rouge_l", "exact_match"),
}
DEFAULT_METRIC = {
    "classification": "accuracy",
    "token_classification": "f1",
    "causal_lm": "loss",
    "seq2seq": "loss",
}


def labels_for(config: RunConfig, records: list[Record], source: str) -> list[Any] | None:
    """The label set a task learns from its training records (None for generative tasks)."""
    if config.task == "classification":
        from lorakit.tasks.classification import labels_from_records

        return labels_from_records(records, config.data.label_field, source, config.data.strict_labels)
    if config.task == "token_classification":
        from lorakit.tasks.token_classification import tags_from_records

        return tags_from_records(records, config.data.tags_field, source)
    return None


def build_task(config: RunConfig, ref: ModelRef, tokenizer: Any, labels: list[Any] | None) -> Task:
    if config.task == "classification":
        from lorakit.tasks.classification import ClassificationTask

        return ClassificationTask(config, ref, tokenizer, labels or [])
    if config.task == "token_classification":
        from lorakit.tasks.token_classification import TokenClassificationTask

        return TokenClassificationTask(config, ref, tokenizer, labels or [])
    if config.task == "causal_lm":
        from lorakit.tasks.causal_lm import CausalLMTask

        return CausalLMTask(config, ref, tokenizer)
    from lorakit.tasks.seq2seq import Seq2SeqTask

    return Seq2SeqTask(config, ref, tokenizer)


__all__ = ["DEFAULT_METRIC", "TASK_METRICS", "Task", "build_task", "labels_for"]
