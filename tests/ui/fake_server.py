"""A small stand-in for ``lorakit serve`` that speaks SERVING_API.md's shapes.

Deterministic answers (so the page's columns can be compared with the API's own answers),
one token per streamed chunk with a short pause (so streaming is visible), a counter of how many
streams are open at once (the page must send its columns together), optional API key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

HTML_OUTPUT = '<script>alert("pwned")</script><img src=x onerror=alert(2)> <b>bold?</b>'
MODELS = [
    {"id": "tiny-base", "parent": None, "lorakit": {"kind": "base", "task": "causal_lm", "labels": None}},
    {
        "id": "shouty",
        "parent": "tiny-base",
        "lorakit": {"kind": "adapter", "task": "causal_lm", "labels": None},
    },
    {
        "id": "html-writer",
        "parent": "tiny-base",
        "lorakit": {"kind": "adapter", "task": "causal_lm", "labels": None},
    },
    {
        "id": "sentiment",
        "parent": "tiny-encoder",
        "lorakit": {"kind": "adapter", "task": "classification", "labels": ["negative", "positive"]},
    },
    {
        "id": "ner",
        "parent": "tiny-encoder",
        "lorakit": {"kind": "adapter", "task": "token_classification", "labels": None},
    },
]
POSITIVE, NEGATIVE = {"good", "great", "lovely", "fine"}, {"bad", "awful", "poor", "boring"}
ENTITY_TYPES = {"Alice": "PER", "Bob": "PER", "Paris": "LOC", "London": "LOC", "Acme": "ORG"}


def answer(model: str, prompt: str, max_tokens: int, seed: int) -> list[str]:
    """The tokens a model 'generates' (each token is one streamed chunk)."""
    words = prompt.split() or ["(empty)"]
    if model == "html-writer":
        pieces = re.findall(r"<[^>]*>|[^<]+", HTML_OUTPUT)
    elif model == "shouty":
        pieces = [w.upper() + "!" for w in words]
    else:
        digest = hashlib.sha256(f"{seed}:{prompt}".encode()).hexdigest()[:6]
        pieces = ["Base", " model", " heard", *(f" {w}" for w in reversed(words)), f" #{digest}"]
    pieces = [
        p if i == 0 or p.startswith(" ") or model == "html-writer" else f" {p}" for i, p in enumerate(pieces)
    ]
    return pieces[:max_tokens]


def classify(text: str) -> dict[str, Any]:
    words = re.findall(r"[a-z]+", text.lower())
    pos, neg = sum(w in POSITIVE for w in words), sum(w in NEGATIVE for w in words)
    p = (pos + 1) / (pos + neg + 2)
    probs = {"negative": round(1 - p, 6), "positive": round(p, 6)}
    return {"label": max(probs, key=probs.__getitem__), "probs": probs}


def entities(text: str) -> dict[str, Any]:
    found = [
        {"label": ENTITY_TYPES[m.group()], "text": m.group(), "start": m.start(), "end": m.end()}
        for m in re.finditer(r"\w+", text)
        if m.group() in ENTITY_TYPES
    ]
    tokens = text.split()
    return {"tokens": tokens, "tags": ["O"] * len(tokens), "entities": found}


def error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


class FakeServer:
    """The /v1 routes on a FastAPI app; counters for the tests."""

    def __init__(self, api_key: str | None = None, token_delay_s: float = 0.02) -> None:
        self.api_key = api_key
        self.delay = token_delay_s
        self.open_streams = 0
        self.max_open_streams = 0
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def install(self, app: FastAPI, prefix: str = "/v1") -> FastAPI:
        app.get(f"{prefix}/models")(self.models)
        app.post(f"{prefix}/completions")(self.completions)
        app.post(f"{prefix}/chat/completions")(self.chat)
        app.post(f"{prefix}/classify")(self.classify)
        return app

    def denied(self, request: Request) -> JSONResponse | None:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "missing or wrong API key", "authentication_error")
        return None

    def find(self, model: Any) -> dict[str, Any] | None:
        return next((m for m in MODELS if m["id"] == model), None)

    async def models(self, request: Request) -> Any:
        if (denied := self.denied(request)) is not None:
            return denied
        data = [{"object": "model", "created": 0, "owned_by": "lorakit", **m} for m in MODELS]
        return {"object": "list", "data": data}

    async def completions(self, request: Request) -> Any:
        return await self._generate(request, chat=False)

    async def chat(self, request: Request) -> Any:
        return await self._generate(request, chat=True)

    async def _generate(self, request: Request, chat: bool) -> Any:
        if (denied := self.denied(request)) is not None:
            return denied
        body = await request.json()
        self.requests.append(body)
        model = self.find(body.get("model"))
        if model is None:
            return error(404, f"unknown model {body.get('model')!r}", "not_found_error", "model")
        prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
        pieces = answer(model["id"], prompt, int(body.get("max_tokens") or 16), int(body.get("seed") or 0))
        if not body.get("stream"):
            text = "".join(pieces)
            choice = {"index": 0, "finish_reason": "stop"}
            choice |= {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(pieces)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            return {
                "id": "cmpl-fake",
                "object": "text_completion",
                "model": model["id"],
                "choices": [choice],
                "usage": usage,
            }
        return StreamingResponse(self._stream(model["id"], pieces, chat), media_type="text/event-stream")

    async def _stream(self, model: str, pieces: list[str], chat: bool) -> AsyncIterator[str]:
        with self._lock:
            self.open_streams += 1
            self.max_open_streams = max(self.max_open_streams, self.open_streams)
        try:
            for piece in pieces:
                await asyncio.sleep(self.delay)
                choice = {"index": 0, "finish_reason": None}
                choice |= {"delta": {"content": piece}} if chat else {"text": piece}
                yield f"data: {json.dumps({'id': 'cmpl-fake', 'model': model, 'choices': [choice]})}\n\n"
            last = {"index": 0, "finish_reason": "stop"} | ({"delta": {}} if chat else {"text": ""})
            yield f"data: {json.dumps({'id': 'cmpl-fake', 'model': model, 'choices': [last]})}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            with self._lock:
                self.open_streams -= 1

    async def classify(self, request: Request) -> Any:
        if (denied := self.denied(request)) is not None:
            return denied
        body = await request.json()
        model = self.find(body.get("model"))
        if model is None or model["lorakit"]["task"] not in ("classification", "token_classification"):
            return error(404, f"no encoder adapter {body.get('model')!r}", "not_found_error", "model")
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        task = model["lorakit"]["task"]
        run = classify if task == "classification" else entities
        data = [{"index": i, **run(text)} for i, text in enumerate(inputs)]
        n = sum(len(t.split()) for t in inputs)
        return {
            "object": "list",
            "model": model["id"],
            "task": task,
            "data": data,
            "usage": {"prompt_tokens": n, "total_tokens": n},
        }
