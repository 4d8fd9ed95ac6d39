"""Sequence-to-sequence (T5 / BART / Marian class): source -> target, loss and BLEU."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lorakit.data.batching import Feature
from lorakit.data.readers import Record, require_field
from lorakit.errors import LorakitError
from lorakit.model_sources import ModelRef, load_pretrained
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks.common import accepted_inputs, batched, collate_for, set_pad_token
from lorakit.tasks.generation_eval import generation_metrics, predict_by_generation


class Seq2SeqTask:
    name = "seq2seq"
    default_metric = "loss"
    labels = None

    def __init__(self, config: RunConfig, ref: ModelRef, tokenizer: Any) -> None:
        self.config, self.ref, self.tokenizer = config, ref, tokenizer
        self.pad_id = set_pad_token(tokenizer)
        self.inputs: set[str] = {"input_ids", "attention_mask", "labels"}

    def load_model(self) -> nn.Module:
        from transformers import AutoModelForSeq2SeqLM

        model = load_pretrained(self.ref, AutoModelForSeq2SeqLM)
        if not getattr(model.config, "is_encoder_decoder", False):
            raise LorakitError(f"model {self.ref.name!r} is not an encoder-decoder model; use task causal_lm")
        self.inputs = accepted_inputs(model) & {"input_ids", "attention_mask", "labels"}
        return model

    def head_modules(self, model: nn.Module) -> list[str]:
        return []

    def _source_ids(self, text: str) -> list[int]:
        d = self.config.data
        return self.tokenizer(d.source_prefix + text, truncation=True, max_length=d.max_length)["input_ids"]

    def encode(self, records: list[Record], source: str, with_targets: bool = True) -> list[Feature]:
        d = self.config.data
        out: list[Feature] = []
        for i, r in enumerate(records):
            ids = self._source_ids(str(require_field(r, d.source_field, source, i)))
            f: Feature = {"input_ids": ids, "attention_mask": [1] * len(ids)}
            if with_targets:
                target = str(require_field(r, d.target_field, source, i))
                f["labels"] = self.tokenizer(
                    text_target=target, truncation=True, max_length=d.max_target_length
                )["input_ids"]
            out.append(f)
        return out

    def collate(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        return collate_for(self.inputs, self.pad_id, features)

    def evaluate(self, model: nn.Module, records: list[Record], features: list[Feature]) -> dict[str, Any]:
        bs = self.config.train.eval_batch_size or 2 * self.config.train.batch_size
        total = count = 0.0
        for _, batch, out in batched(model, features, self.collate, bs):
            logits, target = out.logits.float(), batch["labels"]
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total += float(loss)
            count += float((target != -100).sum())
        loss = total / max(count, 1.0)
        d = self.config.data
        return {
            "loss": loss,
            "perplexity": math.exp(min(loss, 50.0)),
            **generation_metrics(
                self.config, records, d.source_field, d.target_field, lambda rs: self.predict(model, rs)
            ),
        }

    def predict(self, model: nn.Module, records: list[Record]) -> list[dict[str, Any]]:
        field = self.config.data.source_field
        return predict_by_generation(model, self.tokenizer, self.config, records, field, self._source_ids)
