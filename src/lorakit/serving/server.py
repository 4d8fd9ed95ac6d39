"""Running the app under uvicorn; SIGTERM drains: refuse new work (503), finish in-flight, exit 0."""

from __future__ import annotations

import gc
import signal
from types import FrameType

import uvicorn

from lorakit.serving.api import create_app
from lorakit.serving.state import ServerState

DRAIN_SECONDS = 600


def settle_heap() -> None:
    """Move everything alive now (the base model, the adapters loaded at start-up: ~400k Python
    objects for SmolLM2) out of the garbage collector's generations. They live as long as the
    process, and a full collection that walks them took ~250 ms, landing on whichever request
    was running (measured: every ~8th adapter load). Done by the server, which owns its process;
    the library never calls it."""
    gc.collect()
    gc.freeze()


def run(state: ServerState) -> int:
    app = create_app(state)
    config = uvicorn.Config(
        app,
        host=state.config.host,
        port=state.config.port,
        log_level="warning",
        timeout_graceful_shutdown=DRAIN_SECONDS,
        access_log=False,
    )
    server = uvicorn.Server(config)
    stop = server.handle_exit

    def drain(sig: int, frame: FrameType | None) -> None:
        # uvicorn stops listening and waits for open requests (streams included); new requests on
        # connections that are still open get 503 from the gate meanwhile.
        state.draining = True
        if sig == signal.SIGTERM:
            server.should_exit = True  # not stop(): uvicorn would re-raise SIGTERM at the end, exit 0 instead
        else:
            stop(sig, frame)

    server.handle_exit = drain  # capture_signals() installs this instance attribute for SIGINT/SIGTERM
    where = f"http://{state.config.host}:{state.config.port}"
    key = ", API key required" if state.config.api_key else ""
    known = len(state.store.known)
    print(
        f"lorakit serve: {state.backend.id} ({state.backend.kind}) on {where}, {known} adapters{key}",
        flush=True,
    )
    settle_heap()
    server.run()
    return 0
