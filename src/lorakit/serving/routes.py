"""Generation (/v1/completions, /v1/chat/completions, streamed or not) and /v1/classify."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from lorakit.errors import LorakitError
from lorakit.inference.batcher import TokenEvent
from lorakit.inference.sampling import SamplingParams
from lorakit.serving.engine import GenJob, QueueFull
from lorakit.serving.errors import ApiError
from lorakit.serving.schemas import ChatRequest, ClassifyRequest, CompletionRequest
from lorakit.serving.state import ServerState


class Generation:
    """The jobs of one HTTP request (one per prompt) and the events coming back from the engine."""

    def __init__(
        self,
        state: ServerState,
        model: str,
        adapter: str | None,
        prompts: list[list[int]],
        params: SamplingParams,
    ) -> None:
        self.state, self.model = state, model
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, TokenEvent | Exception]] = asyncio.Queue()
        self.ids = [f"{uuid.uuid4().hex}-{i}" for i in range(len(prompts))]
        self.open = set(self.ids)
        self.started = time.perf_counter()
        submitted = []
        try:
            for i, (job_id, ids) in enumerate(zip(self.ids, prompts, strict=True)):
                self.state.engine.submit(GenJob(job_id, adapter, ids, params, self._sink(i), model))
                submitted.append(job_id)
        except QueueFull as e:
            self._cancel(submitted)
            raise state.queue_error(e) from None
        except LorakitError as e:
            self._cancel(submitted)
            raise ApiError(400, str(e), param="max_tokens" if "context" in str(e) else None) from None

    def _sink(self, index: int):
        def put(event: TokenEvent | Exception) -> None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))

        return put

    def _cancel(self, ids: list[str]) -> None:
        for job_id in ids:
            self.state.engine.cancel(job_id)

    def close(self) -> None:
        """Cancel whatever has not finished (a client that went away frees its slots)."""
        self._cancel(sorted(self.open))
        self.open.clear()

    async def events(self, request: Request) -> AsyncIterator[tuple[int, TokenEvent]]:
        checked = time.monotonic()
        while self.open:
            if time.monotonic() - checked > 0.2:  # a client that went away frees its slot promptly
                checked = time.monotonic()
                if await request.is_disconnected():
                    self.close()
                    return
            try:
                index, event = await asyncio.wait_for(self.queue.get(), timeout=0.25)
            except TimeoutError:
                if await request.is_disconnected():
                    self.close()
                    return
                continue
            if isinstance(event, Exception):
                self.close()
                if isinstance(event, ApiError):
                    raise event
                raise ApiError(400, str(event))
            if event.finish_reason is not None:
                self.open.discard(self.ids[index])
            yield index, event


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _respond(request: Request, state: ServerState, gen: Generation, chat: bool, stream: bool) -> Any:
    kind = "chat.completion" if chat else "text_completion"
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
    created = int(time.time())
    route = "/v1/chat/completions" if chat else "/v1/completions"

    def choice(index: int, text: str, finish: str | None, delta: bool) -> dict[str, Any]:
        if not chat:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
        body = {"role": "assistant", "content": text} if not delta or text else {}
        return {
            "index": index,
            ("delta" if delta else "message"): body,
            "logprobs": None,
            "finish_reason": finish,
        }

    def chunk(choices: list[dict[str, Any]], usage: dict | None = None) -> str:
        body: dict[str, Any] = {
            "id": rid,
            "object": kind + (".chunk" if chat else ""),
            "created": created,
            "model": gen.model,
            "choices": choices,
        }
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    counts = {"prompt": 0, "completion": [0] * len(gen.ids)}

    def account(index: int, e: TokenEvent) -> None:
        counts["completion"][index] = e.completion_tokens
        if e.finish_reason is not None:
            counts["prompt"] += e.prompt_tokens

    if stream:
        first = await _first(gen, request)  # errors before the stream starts get their status

        async def body() -> AsyncIterator[str]:
            try:
                if chat:
                    yield chunk(
                        [
                            {
                                "index": i,
                                "delta": {"role": "assistant", "content": ""},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                            for i in range(len(gen.ids))
                        ]
                    )
                async for index, e in _chain(first, gen, request):
                    account(index, e)
                    if e.text or e.finish_reason:
                        yield chunk([choice(index, e.text, e.finish_reason, True)])
                yield chunk([], _usage(counts["prompt"], sum(counts["completion"])))
                yield "data: [DONE]\n\n"
                state.metrics.latency.labels(route).observe(time.perf_counter() - gen.started)
            except ApiError as err:
                yield f"data: {json.dumps({'error': {'message': err.message, 'type': 'server_error'}})}\n\n"
            finally:
                gen.close()

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    texts = [""] * len(gen.ids)
    finish: list[str | None] = [None] * len(gen.ids)
    try:
        async for index, e in gen.events(request):
            account(index, e)
            texts[index] += e.text
            finish[index] = e.finish_reason or finish[index]
    finally:
        gen.close()
    state.metrics.latency.labels(route).observe(time.perf_counter() - gen.started)
    return {
        "id": rid,
        "object": kind,
        "created": created,
        "model": gen.model,
        "choices": [choice(i, texts[i], finish[i], False) for i in range(len(texts))],
        "usage": _usage(counts["prompt"], sum(counts["completion"])),
    }


async def _first(gen: Generation, request: Request) -> tuple[int, TokenEvent] | None:
    async for item in gen.events(request):
        return item
    return None


async def _chain(first: tuple[int, TokenEvent] | None, gen: Generation, request: Request):
    if first is not None:
        yield first
        async for item in gen.events(request):
            yield item


def _generation_model(state: ServerState, model: str) -> str | None:
    info = state.resolve(model)
    if state.backend.kind != "causal_lm":
        raise ApiError(
            400, f"the base model {state.backend.id!r} is an encoder: use /v1/classify", param="model"
        )
    if info is not None and info.task != "causal_lm":
        raise ApiError(400, f"{model!r} is a {info.task} adapter: use /v1/classify", param="model")
    return None if info is None else info.name


def install(app: FastAPI, state: ServerState, auth: Any) -> None:
    @app.post("/v1/completions", dependencies=[auth])
    async def completions(body: CompletionRequest, request: Request) -> Any:
        adapter = _generation_model(state, body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        ids = [state.backend.prompt_ids(p) for p in prompts]
        state.metrics.adapter_requests.labels(body.model).inc()
        gen = Generation(state, body.model, adapter, ids, _sampling(body))
        return await _respond(request, state, gen, chat=False, stream=body.stream)

    @app.post("/v1/chat/completions", dependencies=[auth])
    async def chat(body: ChatRequest, request: Request) -> Any:
        adapter = _generation_model(state, body.model)
        try:
            ids = state.backend.chat_ids([m.model_dump() for m in body.messages])
        except LorakitError as e:
            raise ApiError(400, str(e), param="messages") from None
        if body.max_completion_tokens and not body.max_tokens:
            body.max_tokens = body.max_completion_tokens
        state.metrics.adapter_requests.labels(body.model).inc()
        gen = Generation(state, body.model, adapter, [ids], _sampling(body))
        return await _respond(request, state, gen, chat=True, stream=body.stream)

    @app.post("/v1/classify", dependencies=[auth])
    async def classify(body: ClassifyRequest) -> Any:
        info = state.resolve(body.model)
        if info is None or info.task not in ("classification", "token_classification"):
            what = "the base model" if info is None else f"a {info.task} adapter"
            raise ApiError(
                400,
                f"{body.model!r} is {what}: /v1/classify needs a classification or "
                "token_classification adapter",
                param="model",
            )
        texts = [body.input] if isinstance(body.input, str) else body.input
        if len(texts) > state.config.max_classify_inputs:
            raise ApiError(
                400, f"input: at most {state.config.max_classify_inputs} texts per request", param="input"
            )
        started = time.perf_counter()
        state.metrics.adapter_requests.labels(body.model).inc()
        try:
            future = state.engine.classify(info.name, texts)
        except QueueFull as e:
            raise state.queue_error(e) from None
        try:
            task, items, tokens = await asyncio.wrap_future(future)
        except LorakitError as e:
            raise ApiError(400, f"adapter {body.model!r} cannot be served: {e}", param="model") from None
        state.metrics.latency.labels("/v1/classify").observe(time.perf_counter() - started)
        return {
            "object": "list",
            "model": body.model,
            "task": task,
            "data": [{"index": i, **item} for i, item in enumerate(items)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _sampling(body: CompletionRequest | ChatRequest) -> SamplingParams:
    try:
        return body.sampling()
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise ApiError(400, f"{param}: {err['msg']}", param=param) from None
