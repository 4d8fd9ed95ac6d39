"""Iteration-level (continuous) batching for causal LMs, with one adapter per row.

Each ``step()``: requests that were submitted join (their prompts are prefilled together, with
their own adapters, and their caches appended to the running batch), then every running row
decodes one token in one mixed-adapter forward; rows that finished (end-of-sequence, a stop
string, max_tokens, the context length) or were cancelled leave. A short request therefore never
waits for a long one, and a row computes what it would compute alone (left padding is masked and
position ids are per row).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lorakit.errors import LorakitError
from lorakit.inference.kv import BatchCache
from lorakit.inference.sampling import SamplingParams, next_tokens, row_generator
from lorakit.inference.text import TextStream
from lorakit.mixed import MixedBatch, check_mixable


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt (token ids) to continue with one adapter (None: the base model)."""

    id: str
    prompt_ids: list[int]
    adapter: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass(frozen=True)
class TokenEvent:
    """What one step produced for one request: a token and its final text, and whether it ended."""

    id: str
    token_id: int | None
    text: str
    finish_reason: str | None  # "stop" | "length" | None while running
    prompt_tokens: int
    completion_tokens: int


@dataclass
class _Row:
    request: GenerationRequest
    generator: torch.Generator | None
    stream: TextStream | None
    generated: list[int] = field(default_factory=list)


def context_length(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def eos_ids(model: nn.Module, tokenizer: Any) -> set[int]:
    out: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        out.update([value] if isinstance(value, int) else (value or []))
    return out


def _survivors(alive: list[bool]) -> list[int]:
    """The new order of the rows still alive: each keeps its place when it can, and the last
    ones fill the places of rows that left. The rows' gathered adapter weights then change only
    where a row moved or joined (layers/mixed.py re-gathers those rows only)."""
    n = sum(alive)
    movers = iter([i for i in range(n, len(alive)) if alive[i]])
    return [i if alive[i] else next(movers) for i in range(n)]


class ContinuousBatcher:
    """Runs many generation requests as one batch that requests join and leave between steps."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        *,
        max_batch: int = 16,
        strategy: str = "gather",
        eos_token_ids: set[int] | None = None,
        logits_hook: Callable[[list[str], torch.Tensor], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise LorakitError(f"max_batch must be at least 1, got {max_batch}")
        self.model, self.tokenizer, self.max_batch, self.strategy = model, tokenizer, max_batch, strategy
        self.eos = eos_ids(model, tokenizer) if eos_token_ids is None else set(eos_token_ids)
        self.context = context_length(model)
        self.logits_hook = logits_hook
        """Called with (request ids, their next-token logits) at every prefill and decode."""
        self.device = next(model.parameters()).device
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = "logits_to_keep" in params
        self.waiting: deque[GenerationRequest] = deque()
        self.rows: list[_Row] = []
        self.kv = BatchCache()
        self._cancelled: set[str] = set()
        self._decode_mix: tuple[tuple[str | None, ...], MixedBatch] | None = None

    # -- requests ----------------------------------------------------------------------------
    def check(self, request: GenerationRequest) -> None:
        """Refuse up front what cannot run: an empty prompt, or prompt + max_tokens past the context."""
        if not request.prompt_ids:
            raise LorakitError("the prompt is empty (0 tokens)")
        total = len(request.prompt_ids) + request.params.max_tokens
        if self.context is not None and total > self.context:
            raise LorakitError(
                f"prompt ({len(request.prompt_ids)} tokens) + max_tokens ({request.params.max_tokens}) "
                f"= {total} exceeds the model's context length of {self.context} tokens"
            )
        if request.adapter is not None:
            check_mixable(self.model, {request.adapter})

    def submit(self, request: GenerationRequest) -> None:
        """Queue a request; it joins the running batch at the next ``step``."""
        self.check(request)
        self.waiting.append(request)

    def cancel(self, request_id: str) -> None:
        """The request leaves at the next step (its slot is free for others from then on)."""
        self._cancelled.add(request_id)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.rows)

    @property
    def running(self) -> int:
        return len(self.rows)

    # -- one iteration -------------------------------------------------------------------------
    def step(self) -> list[TokenEvent]:
        """Admit waiting requests, decode one token for every running row; returns the new events."""
        self._drop_cancelled()
        events: list[TokenEvent] = []
        with torch.inference_mode():
            if self.rows:
                decoded = self._decode()
                self._leave(decoded)
                events += decoded
            joining = []
            while self.waiting and len(self.rows) + len(joining) < self.max_batch:
                joining.append(self.waiting.popleft())
            if joining:  # joined rows get their first token from the prefill
                prefilled = self._prefill(joining)
                self._leave(prefilled)
                events += prefilled
        return events

    def _drop_cancelled(self) -> None:
        if not self._cancelled:
            return
        self.waiting = deque(r for r in self.waiting if r.id not in self._cancelled)
        keep = _survivors([row.request.id not in self._cancelled for row in self.rows])
        if len(keep) != len(self.rows):
            self.rows = [self.rows[i] for i in keep]
            self.kv.keep(keep)
        self._cancelled.clear()

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any, mix: MixedBatch):
        kwargs: dict[str, Any] = {"attention_mask": mask, "position_ids": pos, "use_cache": True}
        if cache is not None:
            kwargs[self._cache_arg] = cache
        if self._keep_arg:
            kwargs["logits_to_keep"] = 1
        with mix:
            out = self.model(input_ids=ids, **kwargs)
        return out.logits[:, -1, :], out.past_key_values

    def _prefill(self, requests: list[GenerationRequest]) -> list[TokenEvent]:
        longest = max(len(r.prompt_ids) for r in requests)
        ids = torch.zeros(len(requests), longest, dtype=torch.long)
        mask = torch.zeros(len(requests), longest, dtype=torch.long)
        for i, r in enumerate(requests):
            ids[i, longest - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[i, longest - len(r.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        mix = MixedBatch(self.model, [r.adapter for r in requests], self.strategy)
        logits, cache = self._forward(ids, mask, pos, None, mix)
        self.kv.join(cache, mask, mask.sum(-1, keepdim=True))
        start = len(self.rows)
        for r in requests:
            stream = TextStream(self.tokenizer, r.params.stop) if self.tokenizer is not None else None
            self.rows.append(_Row(r, row_generator(r.params, self.device), stream))
        return self._emit(logits, start)

    def _decode(self) -> list[TokenEvent]:
        rows = self.rows
        last = torch.tensor([[row.generated[-1]] for row in rows], device=self.device)
        mask, pos = self.kv.step_inputs()
        key = tuple(row.request.adapter for row in rows)
        if self._decode_mix is None or self._decode_mix[0] != key:
            old = None if self._decode_mix is None else self._decode_mix[1]
            self._decode_mix = (key, MixedBatch(self.model, list(key), self.strategy, replaces=old))
        logits, _ = self._forward(last, mask, pos, self.kv.cache, self._decode_mix[1])
        return self._emit(logits, 0)

    def _emit(self, logits: torch.Tensor, start: int) -> list[TokenEvent]:
        rows = self.rows[start : start + logits.shape[0]]
        if self.logits_hook is not None:
            self.logits_hook([r.request.id for r in rows], logits)
        tokens = next_tokens(logits, [r.request.params for r in rows], [r.generator for r in rows])
        events = []
        for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            events.append(self._advance(row, token, start + i))
        return events

    def _advance(self, row: _Row, token: int, index: int) -> TokenEvent:
        req = row.request
        row.generated.append(token)
        finish = None
        text = ""
        if token in self.eos:
            finish = "stop"
        elif row.stream is not None:
            text = row.stream.push(token)
            finish = "stop" if row.stream.stopped else None
        at_context = self.context is not None and len(req.prompt_ids) + len(row.generated) >= self.context
        if finish is None and (len(row.generated) >= req.params.max_tokens or at_context):
            finish = "length"
        if finish and row.stream is not None and not row.stream.stopped:
            text += row.stream.flush()
        count = len(row.generated) - (1 if token in self.eos else 0)
        return TokenEvent(req.id, token, text, finish, len(req.prompt_ids), count)

    def _leave(self, events: list[TokenEvent]) -> None:
        done = {e.id for e in events if e.finish_reason is not None}
        if not done:
            return
        keep = _survivors([row.request.id not in done for row in self.rows])
        self.rows = [self.rows[i] for i in keep]
        self.kv.keep(keep)
