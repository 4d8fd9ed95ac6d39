"""Causal LM fine-tuning: prompt/response or chat messages, loss on response tokens only."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lorakit.data.batching import Feature
from lorakit.data.readers import Record, require_field
from lorakit.errors import DataError
from lorakit.model_sources import ModelRef, load_pretrained
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks.common import batched, collate_for, set_pad_token
from lorakit.tasks.generation_eval import generation_metrics, predict_by_generation

IGNORE = -100


class CausalLMTask:
    name = "causal_lm"
    default_metric = "loss"
    labels = None

    def __init__(self, config: RunConfig, ref: ModelRef, tokenizer: Any) -> None:
        self.config, self.ref, self.tokenizer = config, ref, tokenizer
        self.pad_id = set_pad_token(tokenizer)
        d = config.data
        self.chat = bool(d.use_chat_template and getattr(tokenizer, "chat_template", None))

    def load_model(self) -> nn.Module:
        from transformers import AutoModelForCausalLM

        model = load_pretrained(self.ref, AutoModelForCausalLM)
        model.config.pad_token_id = self.pad_id
        return model

    def head_modules(self, model: nn.Module) -> list[str]:
        return []

    # -- text -> token ids -------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _chat_text(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a prompt formatted as in training, ready for generation."""
        prompt = self.config.data.prompt_prefix + prompt
        if self.chat:
            text = self._chat_text([{"role": "user", "content": prompt}], add_generation_prompt=True)
        else:
            text = self.config.data.prompt_template.format(prompt=prompt)
            bos = self.tokenizer.bos_token
            if bos and getattr(self.tokenizer, "add_bos_token", False):
                text = bos + text
        return self._ids(text)

    def _pair(self, prompt: str, response: str) -> tuple[list[int], list[int]]:
        p = self.prompt_ids(prompt)
        if self.chat:
            msgs = [
                {"role": "user", "content": self.config.data.prompt_prefix + prompt},
                {"role": "assistant", "content": response},
            ]
            full = self._ids(self._chat_text(msgs, add_generation_prompt=False))
            return p, full[len(p) :] if full[: len(p)] == p else self._ids(response)
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        return p, self._ids(response) + eos

    def _messages(self, messages: Any, source: str, index: int) -> tuple[list[int], list[int]]:
        """Chat records: loss on every assistant turn; everything else is context."""
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise DataError(
                f"{source}, record {index + 1}: messages must be a list of {{role, content}} objects"
            )
        if not self.chat:
            raise DataError(f"{source}: chat messages need a tokenizer with a chat template")
        ids: list[int] = []
        labels: list[int] = []
        for i, msg in enumerate(messages):
            if msg["role"] != "assistant":
                continue
            before = self._ids(self._chat_text(messages[:i], add_generation_prompt=True))
            upto = self._ids(self._chat_text(messages[: i + 1], add_generation_prompt=False))
            if upto[: len(before)] != before or before[: len(ids)] != ids:
                raise DataError(f"{source}, record {index + 1}: the chat template is not prefix-stable")
            labels += [IGNORE] * (len(before) - len(ids)) + upto[len(before) :]
            ids = upto
        if not ids:
            raise DataError(f"{source}, record {index + 1}: no assistant message to learn from")
        return ids, labels

    def encode(self, records: list[Record], source: str, with_targets: bool = True) -> list[Feature]:
        d = self.config.data
        out: list[Feature] = []
        for i, r in enumerate(records):
            if d.messages_field:
                ids, labels = self._messages(require_field(r, d.messages_field, source, i), source, i)
            else:
                prompt = str(require_field(r, d.prompt_field, source, i))
                response = str(require_field(r, d.response_field, source, i)) if with_targets else ""
                p, resp = self._pair(prompt, response)
                ids, labels = p + resp, [IGNORE] * len(p) + resp
            ids, labels = ids[: d.max_length], labels[: d.max_length]
            if with_targets and all(x == IGNORE for x in labels):
                continue  # the prompt alone fills max_length: nothing to learn
            out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
        if d.packing and with_targets:
            out = pack(out, d.max_length)
        return out

    def collate(self, features: list[Feature]) -> dict[str, torch.Tensor]:
        return collate_for({"input_ids", "attention_mask", "labels"}, self.pad_id, features)

    # -- metrics and prediction ---------------------------------------------------------------
    def evaluate(self, model: nn.Module, records: list[Record], features: list[Feature]) -> dict[str, Any]:
        bs = self.config.train.eval_batch_size or 2 * self.config.train.batch_size
        total = count = 0.0
        for _, batch, out in batched(model, features, self.collate, bs):
            # Token-weighted mean over response tokens (HF averages per batch).
            logits = out.logits[:, :-1].float()
            target = batch["labels"][:, 1:]
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="sum"
            )
            total += float(loss)
            count += float((target != IGNORE).sum())
        loss = total / max(count, 1.0)
        metrics: dict[str, Any] = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
        if not self.config.data.messages_field:
            d = self.config.data
            metrics |= generation_metrics(
                self.config, records, d.prompt_field, d.response_field, lambda rs: self.predict(model, rs)
            )
        return metrics

    def predict(self, model: nn.Module, records: list[Record]) -> list[dict[str, Any]]:
        field = self.config.data.prompt_field
        return predict_by_generation(model, self.tokenizer, self.config, records, field, self.prompt_ids)


def pack(features: list[Feature], block: int) -> list[Feature]:
    """Concatenate examples into blocks of ``block`` tokens (labels keep their prompt masks)."""
    ids: list[int] = []
    labels: list[int] = []
    out: list[Feature] = []
    for f in features:
        ids += f["input_ids"]  # type: ignore[arg-type]
        labels += f["labels"]  # type: ignore[arg-type]
        while len(ids) >= block:
            out.append({"input_ids": ids[:block], "attention_mask": [1] * block, "labels": labels[:block]})
            ids, labels = ids[block:], labels[block:]
    if ids:
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return out
