"""Classification and token classification with many adapters in one mixed batch."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lorakit.metrics import entity_spans
from lorakit.mixed import MixedBatch
from lorakit.tasks.common import accepted_inputs


def _encode(tokenizer: Any, texts: list[str], device: torch.device, offsets: bool) -> tuple[dict, Any]:
    limit = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
    enc = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=limit,
        return_tensors="pt",
        return_offsets_mapping=offsets,
    )
    inputs = {k: v.to(device) for k, v in enc.items() if k != "offset_mapping"}
    return inputs, enc


def run_heads(
    model: nn.Module, tokenizer: Any, texts: list[str], adapters: list[str], offsets: bool
) -> tuple:
    """(logits, encoding) of one mixed forward: text i through adapter ``adapters[i]``."""
    device = next(model.parameters()).device
    inputs, enc = _encode(tokenizer, texts, device, offsets)
    allowed = accepted_inputs(model)
    inputs = {k: v for k, v in inputs.items() if k in allowed}
    with torch.inference_mode(), MixedBatch(model, adapters):
        logits = model(**inputs).logits
    return logits.float(), enc


def label_results(logits: torch.Tensor, labels: list[list[Any]]) -> list[dict[str, Any]]:
    probs = torch.softmax(logits, dim=-1).tolist()
    out = []
    for row, names in zip(probs, labels, strict=True):
        named = {str(n): round(p, 6) for n, p in zip(names, row, strict=False)}
        best = max(range(len(names)), key=lambda k: row[k])
        out.append({"label": str(names[best]), "probs": named})
    return out


def entity_results(logits: torch.Tensor, enc: Any, texts: list[str], labels: list[list[str]]) -> list[dict]:
    """Words (as the tokenizer splits them), a tag per word (its first sub-token's), entity spans."""
    best = logits.argmax(-1).tolist()
    out = []
    for i, text in enumerate(texts):
        words: dict[int, list[int]] = {}  # word index -> [start, end, first sub-token]
        for t, w in enumerate(enc.word_ids(i)):
            if w is None:
                continue
            start, end = (int(v) for v in enc["offset_mapping"][i][t])
            if w not in words:
                words[w] = [start, end, t]
            words[w][1] = max(words[w][1], end)
        order = sorted(words)
        tokens = [text[words[w][0] : words[w][1]] for w in order]
        tags = [str(labels[i][best[i][words[w][2]]]) for w in order]
        entities = []
        for kind, a, b in entity_spans(tags):
            start, end = words[order[a]][0], words[order[b - 1]][1]
            entities.append({"label": kind, "text": text[start:end], "start": start, "end": end})
        out.append({"tokens": tokens, "tags": tags, "entities": entities})
    return out
