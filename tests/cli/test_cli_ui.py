"""``lorakit ui``: user mistakes exit 2 with one message; a real server process answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lorakit.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


def test_help_names_the_options(capsys: pytest.CaptureFixture) -> None:
    assert main(["ui", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--runs", "--host", "--port", "--api-key", "lorakit[serve]"):
        assert option in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--runs", "no/such/folder"], "--runs no/such/folder: not a folder"),
        (["--port", "70000"], "--port 70000"),
    ],
)
def test_mistakes_exit_2_with_one_message(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["ui", *args] if "--runs" in args else ["ui", "--runs", str(tmp_path), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_serves_the_page_and_guards_the_api(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "one"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "completed", "best_metric": 0.5}))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(SRC), "LORAKIT_API_KEY": "k1"}
    cmd = [sys.executable, "-m", "lorakit", "ui", "--runs", str(tmp_path / "runs"), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(url + "/", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "lorakit ui did not start"
                time.sleep(0.2)
        assert page.status_code == 200 and "<title>lorakit</title>" in page.text
        assert httpx.get(url + "/api/runs").status_code == 401
        runs = httpx.get(url + "/api/runs", headers={"Authorization": "Bearer k1"}).json()
        assert [(r["id"], r["status"], r["best_metric"]) for r in runs["runs"]] == [("one", "completed", 0.5)]
        assert (
            httpx.get(url + "/api/info", headers={"Authorization": "Bearer k1"}).json()["models_served"]
            is False
        )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_without_fastapi_the_message_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "fastapi" or m.startswith(("fastapi.", "lorakit.ui"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what `import fastapi` meets when it is not installed
    assert main(["ui", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'pip install "lorakit[serve]"' in err and "Traceback" not in err
