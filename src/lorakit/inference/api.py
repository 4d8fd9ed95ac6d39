"""``lorakit.generate``: continue many prompts, each with its own adapter, in mixed batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from lorakit.errors import ConfigError
from lorakit.inference.batcher import ContinuousBatcher, GenerationRequest
from lorakit.inference.sampling import SamplingParams


@dataclass(frozen=True)
class Completion:
    """One prompt's result: the generated text (decoded) and token ids, and why it ended."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end-of-sequence token or stop string) | "length"
    adapter: str | None
    prompt_tokens: int


def generate(
    model: nn.Module,
    prompts: Sequence[str | Sequence[int]],
    adapters: Sequence[str | None] | None = None,
    *,
    tokenizer: Any = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: str | list[str] | None = None,
    max_batch: int | None = None,
    strategy: str = "gather",
) -> list[Completion]:
    """Continue every prompt; prompt i runs adapter ``adapters[i]`` (None: the base model).

    Prompts are strings (a ``tokenizer`` is then required, and encodes them with its special
    tokens) or lists of token ids. All prompts run in one continuously batched loop of at most
    ``max_batch`` rows (default: all of them); each row computes what it would compute alone.
    ``seed`` seeds each prompt's own random stream (seed + i) when ``temperature > 0``.
    """
    prompts = list(prompts)
    rows = list(adapters) if adapters is not None else [None] * len(prompts)
    if len(rows) != len(prompts):
        raise ConfigError(
            f"{len(prompts)} prompts but {len(rows)} adapters; give one adapter (or None) per prompt"
        )
    if any(isinstance(p, str) for p in prompts) and tokenizer is None:
        raise ConfigError("string prompts need a tokenizer=; or pass token id lists")
    if stop and tokenizer is None:
        raise ConfigError("stop strings need a tokenizer= to decode the generated text")
    ids = [tokenizer(p)["input_ids"] if isinstance(p, str) else list(p) for p in prompts]
    batcher = ContinuousBatcher(
        model, tokenizer, max_batch=max_batch or max(len(prompts), 1), strategy=strategy
    )
    for i, (p, adapter) in enumerate(zip(ids, rows, strict=True)):
        params = SamplingParams(
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=None if seed is None else seed + i,
            stop=stop,
        )
        batcher.submit(GenerationRequest(str(i), p, adapter, params))
    tokens: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
    texts: dict[str, str] = dict.fromkeys(tokens, "")
    done: dict[str, str] = {}
    was_training = model.training
    model.eval()
    try:
        while batcher.has_work:
            for e in batcher.step():
                if e.token_id is not None:
                    tokens[e.id].append(e.token_id)
                texts[e.id] += e.text
                if e.finish_reason:
                    done[e.id] = e.finish_reason
    finally:
        model.train(was_training)
    return [
        Completion(texts[str(i)], tokens[str(i)], done[str(i)], rows[i], len(ids[i]))
        for i in range(len(prompts))
    ]
