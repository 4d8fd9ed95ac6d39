"""Token classification (NER): words + tags, first-sub-token labelling, seqeval entity P/R/F1."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lorakit.data.batching import Feature
from lorakit.data.readers import Record, require_field
from lorakit.errors import DataError, LorakitError
from lorakit.metrics import entity_scores, entity_spans
from lorakit.model_sources import ModelRef, load_pretrained
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks.classification import head_modules
from lorakit.tasks.common import accepted_inputs, batched, collate_for, set_pad_token

IGNORE = -100


def _words_and_tags(r: Record, tokens_field: str, tags_field: str, source: str, i: int) -> tuple[list, list]:
    words = require_field(r, tokens_field, source, i)
    tags = require_field(r, tags_field, source, i)
    if not isinstance(words, list) or not isinstance(tags, list) or len(words) != len(tags):
        raise DataError(
            f"{source}, record {i + 1}: {tokens_field!r} and {tags_field!r} must be lists of equal length"
        )
    return [str(w) for w in words], [str(t) for t in tags]


def tags_from_records(records: list[Record], field: str, source: str) -> list[str]:
    tags: set[str] = set()
    for i, r in enumerate(records):
        value = require_field(r, field, source, i)
        if not isinstance(value, list):
            raise DataError(f"{source}, record {i + 1}: {field!r} must be a list of tags")
        tags.update(str(t) for t in value)
    # "O" first keeps id 0 for the outside tag, as most NER checkpoints do.
    return sorted(tags, key=lambda t: (t != "O", t))


class TokenClassificationTask:
    name = "token_classification"
    default_metric = "f1"

    def __init__(self, config: RunConfig, ref: ModelRef, tokenizer: Any, labels: list[str]) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise LorakitError("token_classification needs a fast tokenizer (word_ids) for label alignment")
        self.config, self.ref, self.tokenizer = config, ref, tokenizer
        self.labels = labels
        self.label_map = {t: i for i, t in enumerate(labels)}
        self.pad_id = set_pad_token(tokenizer)
        self.inputs: set[str] = set()

    def load_model(self) -> nn.Module:
        from transformers import AutoModelForTokenClassification

        model = load_pretrained(
            self.ref,
            AutoModelForTokenClassification,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id=self.label_map,
        )
        self.inputs = accepted_inputs(model)
        return model

    def head_modules(self, model: nn.Module) -> list[str]:
        return head_modules(model)

    def _encode_words(self, words: list[str]) -> tuple[dict[str, list[int]], list[int | None]]:
        enc = self.tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=self.config.data.max_length
        )
        return {k: enc[k] for k in enc}, enc.word_ids()

    def encode(self, records: list[Record], source: str, with_targets: bool = True) -> list[Feature]:
        d = self.config.data
        out: list[Feature] = []
        for i, r in enumerate(records):
            if with_targets:
                words, tags = _words_and_tags(r, d.tokens_field, d.tags_field, source, i)
            else:
                words, tags = [str(w) for w in require_field(r, d.tokens_field, source, i)], []
            f, word_ids = self._encode_words(words)
            if with_targets:
                unknown = [t for t in tags if t not in self.label_map]
                if unknown:
                    raise DataError(
                        f"{source}, record {i + 1}: tag {unknown[0]!r} is not in the label map {self.labels}"
                    )
                # Only the first sub-token of each word carries its tag; the rest are ignored.
                labels, prev = [], None
                for w in word_ids:
                    labels.append(IGNORE if w is None or w == prev else self.label_map[tags[w]])
                    prev = w
                f["labels"] = labels
            out.append(f)
        return out

    def collate(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        return collate_for(self.inputs | {"labels"}, self.pad_id, features)

    def _word_predictions(
        self, model: nn.Module, records: list[Record], features: list[Feature]
    ) -> list[list[str]]:
        """Tags per word for records encoded without targets (prediction)."""
        bs = self.config.train.eval_batch_size or 2 * self.config.train.batch_size
        out: list[list[str]] = [[] for _ in features]
        field = self.config.data.tokens_field
        for idx, _, res in batched(model, features, self.collate, bs):
            best = res.logits.argmax(-1).cpu()
            for row, i in enumerate(idx):
                n_words = len(records[i][field])
                _, word_ids = self._encode_words([str(w) for w in records[i][field]])
                tags = ["O"] * n_words  # words cut off by max_length are predicted O
                prev = None
                for pos, w in enumerate(word_ids):
                    if w is not None and w != prev:
                        tags[w] = self.labels[int(best[row, pos])]
                    prev = w
                out[i] = tags
        return out

    def evaluate(self, model: nn.Module, records: list[Record], features: list[Feature]) -> dict[str, Any]:
        """One forward pass: token loss and accuracy on first sub-tokens, and seqeval entity
        scores on words (the first sub-token's prediction; words cut off by max_length: O)."""
        bs = self.config.train.eval_batch_size or 2 * self.config.train.batch_size
        total = count = correct = 0.0
        field = self.config.data.tags_field
        gold = [[str(t) for t in r[field]] for r in records]
        pred = [["O"] * len(g) for g in gold]
        for idx, batch, res in batched(model, features, self.collate, bs):
            logits, target = res.logits.float(), batch["labels"]
            mask = target != IGNORE
            total += float(nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum"))
            best = logits.argmax(-1)
            correct += float((best[mask] == target[mask]).sum())
            count += float(mask.sum())
            for row, i in enumerate(idx):
                # Labelled positions are the first sub-tokens of words 0, 1, 2, ... in order.
                for w, tag_id in enumerate(best[row][mask[row]].tolist()):
                    pred[i][w] = self.labels[tag_id]
        return {
            "loss": total / max(count, 1.0),
            **entity_scores(gold, pred, self.config.eval.tag_scheme),
            "accuracy": correct / max(count, 1.0),
        }

    def predict(self, model: nn.Module, records: list[Record]) -> list[dict[str, Any]]:
        features = self.encode(records, "input", with_targets=False)
        tags = self._word_predictions(model, records, features)
        field = self.config.data.tokens_field
        scheme = self.config.eval.tag_scheme
        return [
            {"tags": t, "entities": _entities(r[field], t, scheme)}
            for r, t in zip(records, tags, strict=True)
        ]


def _entities(words: list[str], tags: list[str], scheme: str | None) -> list[dict[str, Any]]:
    return [
        {"type": kind, "text": " ".join(str(w) for w in words[s:e]), "start": s, "end": e}
        for kind, s, e in entity_spans(tags, scheme)
    ]
