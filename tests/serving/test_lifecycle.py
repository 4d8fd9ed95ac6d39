"""A client that goes away frees its slot; SIGTERM finishes in-flight requests and exits 0."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from lorakit.serving.config import ServeConfig
from lorakit.serving.state import ServerState

from .conftest import LiveServer, free_port, lm_config


@pytest.fixture(scope="module")
def slow_server(lm_assets: dict[str, Path]):
    state = ServerState(lm_config(lm_assets))
    state.backend.lm.register_forward_pre_hook(lambda *a: time.sleep(0.03))  # ~30 ms a step
    with LiveServer(state) as server:
        yield server


def _idle(state: ServerState, timeout: float = 20.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not state.engine.running and not state.engine.pending and not state.store.pins:
            return True
        time.sleep(0.02)
    return False


def test_stream_disconnect_frees_the_slot(slow_server) -> None:
    state = slow_server.state
    body = {"model": "a", "prompt": "one", "max_tokens": 100, "temperature": 0, "stream": True}
    with httpx.stream("POST", slow_server.url + "/v1/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break  # one token in: go away
    assert state.engine.running  # still generating when the client left
    assert _idle(state), "the request kept its slot after the client disconnected"
    tokens = state.metrics.generated_tokens._value.get()
    assert tokens < 100


def test_non_stream_disconnect_frees_the_slot(slow_server) -> None:
    state = slow_server.state
    body = {"model": "b", "prompt": "two", "max_tokens": 100, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(slow_server.url + "/v1/completions", json=body, timeout=0.5)
    assert _idle(state), "the request kept its slot after the client disconnected"


def _serve(config: ServeConfig) -> None:
    """The child process: the real `lorakit serve` path (uvicorn in the main thread, signals on)."""
    from lorakit.serving.server import run

    state = ServerState(config)
    state.backend.lm.register_forward_pre_hook(lambda *a: time.sleep(0.02))  # the requests overlap for sure
    sys.exit(run(state))


def test_sigterm_drains_in_flight_requests_and_exits_0(lm_assets: dict[str, Path]) -> None:
    port = free_port()
    config = lm_config(lm_assets, port=port, max_batch=1, adapters={"a": lm_assets["a"]})
    # fork: the child starts in a second instead of re-importing torch (the suite runs 1 torch thread)
    proc = multiprocessing.get_context("fork").Process(target=_serve, args=(config,))
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not start")
        results: dict[str, object] = {}

        def stream(name: str, tokens: int) -> None:
            body = {
                "model": "a",
                "prompt": "one two",
                "max_tokens": tokens,
                "temperature": 0,
                "stream": True,
                "stop": None,
            }
            with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
                lines = [line for line in r.iter_lines() if line]
            results[name] = lines

        first = threading.Thread(target=stream, args=("first", 120))
        first.start()
        time.sleep(0.3)
        second = threading.Thread(target=stream, args=("queued", 20))  # waits behind the first (max-batch 1)
        second.start()
        deadline = time.time() + 30
        while httpx.get(url + "/health", timeout=5).json()["running"] < 2:  # both are in the engine
            assert time.time() < deadline, "the two requests never overlapped"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGTERM)
        first.join(60)
        second.join(60)
        proc.join(60)
        assert proc.exitcode == 0
        for name in ("first", "queued"):
            lines = results[name]
            assert lines[-1] == "data: [DONE]", name
            finish = [
                json.loads(x[6:])["choices"][0]["finish_reason"]
                for x in lines[:-1]
                if json.loads(x[6:])["choices"]
            ]
            assert finish[-1] in ("length", "stop")
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health", timeout=1)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()


def test_settle_heap_moves_live_objects_out_of_the_collector() -> None:
    import gc

    from lorakit.serving.server import settle_heap

    keep = [object() for _ in range(1000)]
    try:
        settle_heap()
        assert gc.get_freeze_count() >= len(keep)
    finally:
        gc.unfreeze()


def test_the_engine_hands_memory_back_once_each_time_its_work_runs_out(lm_assets: dict[str, Path]) -> None:
    from lorakit.heap import trim_heap

    state = ServerState(lm_config(lm_assets))
    assert state.engine.on_idle is trim_heap  # what the server wires in
    calls: list[float] = []
    state.engine.on_idle = lambda: calls.append(time.perf_counter())
    with LiveServer(state) as server:
        time.sleep(1.2)  # idle since start-up, nothing ran: nothing to hand back
        assert calls == []
        body = {"model": "a", "prompt": "one", "max_tokens": 4, "temperature": 0}
        for spell in (1, 2):
            assert httpx.post(server.url + "/v1/completions", json=body, timeout=30).status_code == 200
            deadline = time.time() + 10
            while len(calls) < spell and time.time() < deadline:
                time.sleep(0.02)
            assert len(calls) == spell
        time.sleep(1.2)  # several idle waits later: still once per busy spell
        assert len(calls) == 2
