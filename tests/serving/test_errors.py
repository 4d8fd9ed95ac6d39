"""Every error status, as an OpenAI error object; bad adapters refused over HTTP; auth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lorakit.inference.sampling import SamplingParams
from lorakit.serving.api import create_app
from lorakit.serving.engine import GenJob
from lorakit.serving.state import ServerState

from .conftest import lm_config

KEY = {"Authorization": "Bearer sesame"}


@pytest.fixture(scope="module")
def state(lm_assets: dict[str, Path]) -> ServerState:
    return ServerState(
        lm_config(lm_assets, api_key="sesame", max_body_bytes=4096, max_queue=2, allow_runtime_loading=True)
    )


@pytest.fixture(scope="module")
def client(state: ServerState) -> Iterator[TestClient]:
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c


def _error(r, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    for w in words:
        assert w in err["message"], err["message"]
    return err


def test_auth(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    _error(client.get("/v1/models"), 401, "API key")
    _error(client.get("/metrics", headers={"Authorization": "Bearer nope"}), 401)
    _error(client.post("/v1/completions", json={"model": "a", "prompt": "x"}), 401)
    assert client.get("/v1/models", headers=KEY).status_code == 200


def test_400_malformed_and_invalid(client: TestClient) -> None:
    post = lambda body, **kw: client.post("/v1/completions", headers=KEY, json=body, **kw)  # noqa: E731
    _error(
        client.post("/v1/completions", headers={**KEY, "content-type": "application/json"}, content=b"{nope"),
        400,
    )
    assert _error(post({"prompt": "x"}), 400)["param"] == "model"
    assert _error(post({"model": "a", "prompt": "x", "temperature": 7}), 400)["param"] == "temperature"
    _error(post({"model": "a", "prompt": 5}), 400)
    _error(post({"model": "a", "prompt": "x", "stop": [""]}), 400, "stop")
    _error(post({"model": "a", "prompt": "one " * 100, "max_tokens": 60}), 400, "exceeds the model's context")
    _error(
        client.post("/v1/classify", headers=KEY, json={"model": "a", "input": "x"}), 400, "causal_lm adapter"
    )
    _error(client.post("/v1/chat/completions", headers=KEY, json={"model": "a", "messages": []}), 400)


def test_404_unknown_model_and_route(client: TestClient) -> None:
    err = _error(client.post("/v1/completions", headers=KEY, json={"model": "nobody", "prompt": "x"}), 404)
    assert err["code"] == "model_not_found" and err["param"] == "model"
    _error(client.get("/v1/nothing-here", headers=KEY), 404)


def test_413_body_too_large(client: TestClient) -> None:
    r = client.post("/v1/completions", headers=KEY, json={"model": "a", "prompt": "x" * 10_000})
    _error(r, 413, "exceeds 4096 bytes")


def test_429_queue_full_with_retry_after(lm_assets: dict[str, Path]) -> None:
    state = ServerState(lm_config(lm_assets, adapters={}, max_queue=2))
    client = TestClient(create_app(state))  # no lifespan: the engine is not started, so the queue stays full
    for i in range(2):
        state.engine.pending.append(GenJob(f"filler{i}", None, [1], SamplingParams(), lambda e: None, "base"))
    r = client.post("/v1/completions", json={"model": "base", "prompt": "one"})
    _error(r, 429, "busy")
    assert r.headers["Retry-After"] == "1"


def test_503_while_draining(client: TestClient, state: ServerState) -> None:
    state.draining = True
    try:
        _error(
            client.post("/v1/completions", headers=KEY, json={"model": "a", "prompt": "x"}),
            503,
            "shutting down",
        )
        assert client.get("/health").status_code == 503
    finally:
        state.draining = False


def test_wrong_base_and_corrupted_adapters_are_refused(client: TestClient) -> None:
    body = {"prompt": "one", "max_tokens": 2}
    _error(
        client.post("/v1/completions", headers=KEY, json={**body, "model": "wrongbase"}),
        400,
        "different base",
    )
    _error(client.post("/v1/completions", headers=KEY, json={**body, "model": "corrupt"}), 400, "checksum")
    r = client.post("/v1/load_lora_adapter", headers=KEY, json={"lora_name": "wb2", "lora_path": "wrongbase"})
    _error(r, 400, "different base")
    assert client.post("/v1/completions", headers=KEY, json={**body, "model": "wb2"}).status_code == 404


def test_runtime_loading_only_under_adapters_dir(client: TestClient, lm_assets: dict[str, Path]) -> None:
    for path in (str(lm_assets["outside"]), "../outside", "/etc"):
        r = client.post("/v1/load_lora_adapter", headers=KEY, json={"lora_name": "x1", "lora_path": path})
        assert _error(r, 400, "outside the adapters folder")["param"] == "lora_path"
    r = client.post("/v1/load_lora_adapter", headers=KEY, json={"lora_name": "c2", "lora_path": "c"})
    assert r.status_code == 200, r.text
    ok = client.post("/v1/completions", headers=KEY, json={"model": "c2", "prompt": "one", "max_tokens": 2})
    assert ok.status_code == 200
    assert client.post("/v1/unload_lora_adapter", headers=KEY, json={"lora_name": "c2"}).status_code == 200
    _error(client.post("/v1/unload_lora_adapter", headers=KEY, json={"lora_name": "c2"}), 404)


def test_runtime_loading_disabled_by_default(lm_assets: dict[str, Path]) -> None:
    state = ServerState(lm_config(lm_assets, adapters={}))
    with TestClient(create_app(state)) as c:
        r = c.post("/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "a"})
        _error(r, 400, "--allow-runtime-loading")
