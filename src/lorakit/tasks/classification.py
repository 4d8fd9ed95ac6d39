"""Sequence classification: single texts or text pairs, string or integer labels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lorakit.data.batching import Feature
from lorakit.data.readers import Record, require_field
from lorakit.distributed import all_reduce_rows
from lorakit.errors import DataError
from lorakit.metrics import confusion_counts
from lorakit.model_sources import ModelRef, load_pretrained
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks.common import (
    accepted_inputs,
    batched,
    collate_for,
    label_index,
    label_value,
    model_device,
    normalise_labels,
    set_pad_token,
)

HEAD_NAMES = ("classifier", "score")


def labels_from_records(records: list[Record], field: str, source: str, strict: bool = True) -> list[Any]:
    values = [
        label_value(require_field(r, field, source, i), field, source, i, strict)
        for i, r in enumerate(records)
    ]
    labels = sorted(set(normalise_labels(values)))
    if len(labels) < 2:
        raise DataError(f"{source}: field {field!r} has {len(labels)} distinct label(s); need at least 2")
    return labels


def head_modules(model: nn.Module, names: tuple[str, ...] = HEAD_NAMES) -> list[str]:
    """The output head trained in full (modules_to_save): e.g. BERT's classifier, Llama's score."""
    present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    return [n for n in names if n in present][:1]


class ClassificationTask:
    name = "classification"
    default_metric = "accuracy"

    def __init__(self, config: RunConfig, ref: ModelRef, tokenizer: Any, labels: list[Any]) -> None:
        self.config, self.ref, self.tokenizer = config, ref, tokenizer
        self.labels = labels
        self.label_map = {label: i for i, label in enumerate(labels)}
        self.pad_id = set_pad_token(tokenizer)
        self.inputs: set[str] = set()

    def load_model(self) -> nn.Module:
        from transformers import AutoModelForSequenceClassification

        model = load_pretrained(
            self.ref,
            AutoModelForSequenceClassification,
            num_labels=len(self.labels),
            id2label={i: str(lab) for i, lab in enumerate(self.labels)},
            label2id={str(lab): i for i, lab in enumerate(self.labels)},
        )
        model.config.pad_token_id = self.pad_id
        self.inputs = accepted_inputs(model)
        return model

    def head_modules(self, model: nn.Module) -> list[str]:
        return head_modules(model)

    def encode(self, records: list[Record], source: str, with_targets: bool = True) -> list[Feature]:
        d = self.config.data
        texts = [str(require_field(r, d.text_field, source, i)) for i, r in enumerate(records)]
        pairs = None
        if d.text_pair_field:
            pairs = [str(require_field(r, d.text_pair_field, source, i)) for i, r in enumerate(records)]
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=d.max_length)
        features: list[Feature] = []
        for i in range(len(records)):
            f: Feature = {k: enc[k][i] for k in enc}
            if with_targets:
                value = require_field(records[i], d.label_field, source, i)
                value = label_value(value, d.label_field, source, i, d.strict_labels)
                f["labels"] = label_index(self.label_map, value, source, i)
            features.append(f)
        return features

    def collate(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        return collate_for(self.inputs | {"labels"}, self.pad_id, features)

    def _logits(self, model: nn.Module, features: list[Feature]) -> torch.Tensor:
        bs = self.config.train.eval_batch_size or 2 * self.config.train.batch_size
        out = torch.zeros(len(features), len(self.labels))
        for idx, _, res in batched(model, features, self.collate, bs, sharded=True):
            out[idx] = res.logits.float().cpu()
        return all_reduce_rows(out, model_device(model))

    def evaluate(self, model: nn.Module, records: list[Record], features: list[Feature]) -> dict[str, Any]:
        """loss, accuracy, macro_f1 and the confusion matrix (rows: gold, columns: predicted)."""
        logits = self._logits(model, features)
        gold = torch.tensor([int(f["labels"]) for f in features])  # type: ignore[arg-type]
        pred = logits.argmax(-1)
        loss = float(nn.functional.cross_entropy(logits, gold))
        counts = confusion_counts(gold.tolist(), pred.tolist(), len(self.labels))
        return {
            "loss": loss,
            "accuracy": float((pred == gold).float().mean()),
            "macro_f1": macro_f1(pred, gold),
            "confusion_matrix": {"labels": [str(x) for x in self.labels], "counts": counts},
        }

    def predict(self, model: nn.Module, records: list[Record]) -> list[dict[str, Any]]:
        features = self.encode(records, "input", with_targets=False)
        probs = self._logits(model, features).softmax(-1)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append(
                {
                    "label": self.labels[best],
                    "probability": round(float(row[best]), 6),
                    "probabilities": {
                        str(lab): round(float(p), 6) for lab, p in zip(self.labels, row, strict=True)
                    },
                }
            )
        return out


def macro_f1(pred: torch.Tensor, gold: torch.Tensor) -> float:
    """Mean F1 over the classes present in gold or predictions."""
    scores = []
    for c in torch.unique(torch.cat([pred, gold])).tolist():
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(sum(scores) / len(scores)) if scores else 0.0
