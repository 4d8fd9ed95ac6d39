"""Schema fuzz: request bodies generated from the server's own OpenAPI schema never give a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lorakit.serving.api import create_app
from lorakit.serving.state import ServerState

from .conftest import lm_config

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def from_schema(schema: dict, components: dict | None = None) -> st.SearchStrategy:
    """Values for a JSON schema (the OpenAPI subset FastAPI emits); bounds are ignored on purpose,
    so out-of-range values are generated too."""
    components = components if components is not None else schema.get("components", {})
    if "$ref" in schema:
        return st.deferred(
            lambda: from_schema(components["schemas"][schema["$ref"].split("/")[-1]], components)
        )
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of(*[from_schema(s, components) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = {k: from_schema(v, components) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required},
        )
    simple = {
        "string": st.text(max_size=24),
        "integer": st.integers(-5, 300) | st.integers(),
        "number": st.floats(allow_nan=False, allow_infinity=False, width=32),
        "boolean": st.booleans(),
        "null": st.none(),
    }
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), components), max_size=4)
    return simple.get(kind, st.none() | st.integers() | st.text(max_size=8))


def _body_schemas(app) -> dict[str, dict]:
    spec = app.openapi()
    out = {}
    for path, ops in spec["paths"].items():
        body = ops.get("post", {}).get("requestBody")
        if body:
            schema = body["content"]["application/json"]["schema"]
            out[path] = {**schema, "components": spec["components"]}
    return out


def test_generated_bodies_never_crash_the_server(lm_assets: dict[str, Path]) -> None:
    state = ServerState(lm_config(lm_assets, allow_runtime_loading=True))
    app = create_app(state)
    schemas = _body_schemas(app)
    assert {"/v1/completions", "/v1/chat/completions", "/v1/classify", "/v1/load_lora_adapter"} <= set(
        schemas
    )
    models = st.sampled_from(["a", "b", "base", "c", "corrupt", "nobody"])
    bodies = st.one_of(
        *[st.tuples(st.just(p), from_schema(s)) for p, s in schemas.items()],
        st.tuples(
            st.sampled_from(sorted(schemas)), st.dictionaries(st.text(max_size=8), st.integers() | st.text())
        ),
    )
    with TestClient(app, raise_server_exceptions=False) as client:

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(bodies, models)
        def check(item, model) -> None:
            path, body = item
            if isinstance(body, dict) and "model" in body and isinstance(body["model"], str):
                body = {**body, "model": model}
            if isinstance(body, dict) and isinstance(body.get("max_tokens"), int):
                body["max_tokens"] = min(body["max_tokens"], 4)
            r = client.post(path, json=body)
            assert r.status_code < 500, (path, body, r.text)
            if r.status_code != 200:  # a valid streamed request answers 200 with server-sent events
                assert set(r.json()["error"]) == {"message", "type", "param", "code"}

        check()
        assert client.get("/health").json()["status"] == "ok"
