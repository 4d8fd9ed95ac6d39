"""Completions and chat over HTTP: mixed adapters, streaming, the openai client."""

from __future__ import annotations

import json

import httpx
import pytest

from lorakit import generate, load_adapter


def _post(server, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60, **kw)


def _stream_text(server, path: str, body: dict) -> tuple[str, list[dict], str | None]:
    chunks, finish = [], None
    with httpx.stream("POST", server.url + path, json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        chunks.append(json.loads(line.removeprefix("data: ")))
    text = ""
    for c in chunks:
        for ch in c["choices"]:
            text += ch.get("text") or (ch.get("delta") or {}).get("content") or ""
            finish = ch["finish_reason"] or finish
    return text, chunks, finish


def test_models_lists_base_and_adapters(lm_server) -> None:
    data = httpx.get(lm_server.url + "/v1/models").json()["data"]
    by_id = {m["id"]: m for m in data}
    assert by_id["base"]["parent"] is None and by_id["base"]["lorakit"]["kind"] == "base"
    assert {"a", "b", "c"} <= set(by_id)
    assert by_id["a"]["parent"] == "base" and by_id["a"]["lorakit"]["loaded"] is True
    assert by_id["c"]["lorakit"]["loaded"] is False  # from --adapters-dir, loaded on first use
    assert "corrupt" not in by_id or by_id["corrupt"]["lorakit"]["loaded"] is False


def test_http_results_equal_the_library_alone(lm_server, lm_assets) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(lm_assets["base"])
    prompt = "question : one two ?"
    for name in ("a", "b", "c", None):
        model = AutoModelForCausalLM.from_pretrained(lm_assets["base"]).eval()
        if name:
            load_adapter(model, lm_assets[name], name)
        want = generate(model, [prompt], [name], tokenizer=tok, max_new_tokens=8)[0]
        got = _post(
            lm_server,
            "/v1/completions",
            {"model": name or "base", "prompt": prompt, "max_tokens": 8, "temperature": 0},
        ).json()
        assert got["choices"][0]["text"] == want.text, name
        assert got["usage"]["completion_tokens"] == len(want.token_ids)
        assert got["usage"]["prompt_tokens"] == want.prompt_tokens


def test_streamed_equals_non_streamed(lm_server) -> None:
    for path, body in [
        (
            "/v1/completions",
            {"model": "b", "prompt": "question : three ?", "max_tokens": 12, "temperature": 0},
        ),
        (
            "/v1/chat/completions",
            {
                "model": "a",
                "messages": [{"role": "user", "content": "one two"}],
                "max_tokens": 10,
                "temperature": 0.8,
                "seed": 3,
            },
        ),
    ]:
        whole = _post(lm_server, path, body).json()["choices"][0]
        text, chunks, finish = _stream_text(lm_server, path, body)
        assert text == (whole.get("text") if "text" in whole else whole["message"]["content"])
        assert finish == whole["finish_reason"]
        assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_stop_string_ends_the_text_before_it(lm_server) -> None:
    body = {"model": "a", "prompt": "question : one ?", "max_tokens": 12, "temperature": 0}
    full = _post(lm_server, "/v1/completions", body).json()["choices"][0]["text"]
    words = full.split()
    assert len(words) >= 3
    cut = _post(lm_server, "/v1/completions", {**body, "stop": [words[2]]}).json()["choices"][0]
    assert cut["finish_reason"] == "stop" and words[2] not in cut["text"].split()
    assert full.startswith(cut["text"])


def test_openai_client_round_trip(lm_server) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=lm_server.url + "/v1", api_key="unused")
    assert {"a", "b"} <= {m.id for m in client.models.list().data}
    done = client.completions.create(model="a", prompt="question : two ?", max_tokens=6, temperature=0)
    assert done.choices[0].finish_reason in ("stop", "length") and done.usage.total_tokens > 0
    chat = client.chat.completions.create(
        model="b", messages=[{"role": "user", "content": "two"}], max_tokens=5, temperature=0
    )
    assert chat.choices[0].message.role == "assistant"
    streamed = client.chat.completions.create(
        model="b", messages=[{"role": "user", "content": "two"}], max_tokens=5, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == chat.choices[0].message.content


def test_mixed_concurrent_requests_each_match_alone(lm_server) -> None:
    import concurrent.futures as cf

    bodies = [
        {"model": m, "prompt": f"question : {w} ?", "max_tokens": 6, "temperature": 0}
        for m, w in [
            ("a", "one"),
            ("b", "two"),
            ("c", "three"),
            ("base", "four"),
            ("a", "five"),
            ("b", "six"),
        ]
    ]
    alone = [_post(lm_server, "/v1/completions", b).json()["choices"][0]["text"] for b in bodies]
    with cf.ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda b: _post(lm_server, "/v1/completions", b).json(), bodies))
    assert [t["choices"][0]["text"] for t in together] == alone
