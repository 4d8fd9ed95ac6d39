"""Fixtures of the page's tests: a runs folder from real tiny runs, live servers, one browser."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.ui import fixtures

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "build" / "ui-screenshots"
CHROMIUM = os.environ.get("LORAKIT_CHROMIUM", "/usr/bin/chromium")
API_KEY = "test-key-123"
LIVE_RUN = "live-run"
LIVE_START_LINES = 8


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real tiny runs, a sweep, the XSS-named run, and ``live-run``: a run still training."""
    base = tmp_path_factory.mktemp("ui")
    root = fixtures.build_runs(base / "runs", base / "work")
    live = root / LIVE_RUN
    live.mkdir()
    shutil.copy2(root / "topics-r8" / "config.yaml", live / "config.yaml")
    lines = (root / "topics-r8" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (live / "metrics.jsonl").write_text("".join(lines[:LIVE_START_LINES]))
    return root


def live_run_rest(runs: Path) -> list[str]:
    """The metrics lines ``live-run`` has not written yet (from the real run it mirrors)."""
    lines = (runs / "topics-r8" / "metrics.jsonl").read_text().splitlines(keepends=True)
    return lines[LIVE_START_LINES:]


class LiveServer:
    """A uvicorn server on 127.0.0.1 in a thread, on a port the OS picked."""

    def __init__(self, app: Any, lifespan: str = "off") -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.state: Any = None  # the ServerState of a real ``lorakit serve`` app

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def ui_app(runs: Path, api_key: str | None = None, fake: Any = None) -> Any:
    """``lorakit ui``'s app; with ``fake`` the fake model routes are added first (like serve)."""
    from fastapi import FastAPI

    from lorakit.ui import mount_ui

    app = FastAPI()
    if fake is not None:
        fake.install(app)
    mount_ui(app, runs, api_key)
    return app


@pytest.fixture(scope="session")
def runs_server(runs_dir: Path) -> Iterator[LiveServer]:
    """``lorakit ui --runs`` with no model and no key."""
    from lorakit.cli.ui import build_app

    with LiveServer(build_app(runs_dir, None)) as server:
        yield server


@pytest.fixture(scope="session")
def fake_model() -> Any:
    from tests.ui.fake_server import FakeServer

    return FakeServer()


@pytest.fixture(scope="session")
def model_server(runs_dir: Path, fake_model: Any) -> Iterator[LiveServer]:
    """The page next to the fake model server (what ``lorakit serve --runs`` will be)."""
    with LiveServer(ui_app(runs_dir, None, fake_model)) as server:
        yield server


@pytest.fixture(scope="session")
def served_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.ui import served

    return served.build_models(tmp_path_factory.mktemp("served"))


def serve(runs: Path, base: Path, adapters: dict[str, Path], api_key: str | None = None) -> LiveServer:
    """The real ``lorakit serve`` app (engine started by its lifespan), page included."""
    from lorakit.serving.api import create_app
    from lorakit.serving.config import ServeConfig
    from lorakit.serving.state import ServerState

    config = ServeConfig(base=str(base), adapters=adapters, runs=runs, max_batch=4, api_key=api_key)
    state = ServerState(config)
    server = LiveServer(create_app(state), lifespan="on")
    server.state = state
    return server


@pytest.fixture(scope="module")
def lm_serve(runs_dir: Path, served_models: dict[str, Path]) -> Iterator[LiveServer]:
    """``lorakit serve lm --adapter concise=... --adapter verbose=... --runs runs_dir``."""
    adapters = {"concise": served_models["lm-a"], "verbose": served_models["lm-b"]}
    with serve(runs_dir, served_models["lm"], adapters) as server:
        yield server


@pytest.fixture(scope="module")
def encoder_serve(runs_dir: Path, served_models: dict[str, Path]) -> Iterator[LiveServer]:
    """``lorakit serve enc --adapter sentiment=... --adapter ner=...``."""
    adapters = {"sentiment": served_models["sentiment"], "ner": served_models["ner"]}
    with serve(runs_dir, served_models["enc"], adapters) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(runs_dir: Path, served_models: dict[str, Path]) -> Iterator[LiveServer]:
    """``lorakit serve --api-key API_KEY``: the page's /api and the model's /v1 routes need it."""
    with serve(runs_dir, served_models["html-lm"], {}, api_key=API_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session (Debian's package; .ci/run installs it)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: install it (apt-get install -y chromium), as .ci/run does")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class PageLog:
    """Console errors, uncaught page errors and dialogs seen by one page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (own sessionStorage) at 1280x800; ``page.log`` holds its errors and dialogs."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    tab.log = PageLog(tab)
    yield tab
    context.close()


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=full_page)
    return path
