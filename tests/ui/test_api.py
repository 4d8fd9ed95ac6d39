"""The /api/ routes over a runs folder written by real (tiny) training runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.ui.conftest import API_KEY, REPO, ui_app
from tests.ui.fixtures import SWEEP, XSS_NAME

from lorakit.ui import mount_ui
from lorakit.ui.routes import STATIC_DIR

FINISHED = ["topics-r2", "topics-r8", "ner-people-places", "numbers-lm", XSS_NAME]


@pytest.fixture(scope="module")
def client(runs_dir: Path) -> TestClient:
    return TestClient(ui_app(runs_dir))


def summary_of(runs_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((runs_dir / name / "summary.json").read_text())


def test_runs_lists_every_run_with_the_numbers_of_its_summary(client: TestClient, runs_dir: Path) -> None:
    data = client.get("/api/runs").json()
    runs = {r["id"]: r for r in data["runs"]}
    assert set(FINISHED) <= set(runs) and not any("trials/" in i for i in runs)  # trials: in the sweep
    for name in FINISHED:
        s, r = summary_of(runs_dir, name), runs[name]
        assert r["name"] == name
        for key in ("status", "task", "model", "best_metric", "best_step", "trainable_params", "wall_time_s"):
            assert r[key] == s[key], (name, key)
        assert r["metric"] == s["metric_for_best"]
        assert r["step"] == s["final_step"]
    report = json.loads((runs_dir / SWEEP / "sweep.json").read_text())
    (sweep,) = data["sweeps"]
    best = next(t for t in report["trials"] if t["trial"] == report["best_trial"])
    assert (sweep["id"], sweep["best_metric"], sweep["counts"]) == (
        SWEEP,
        best["best_metric"],
        {"completed": 3},
    )


def test_metrics_pages_rebuild_the_file_exactly(client: TestClient, runs_dir: Path) -> None:
    path = runs_dir / "numbers-lm" / "metrics.jsonl"
    expected = [json.loads(line) for line in path.read_text().splitlines()]
    first = client.get("/api/metrics", params={"id": "numbers-lm"}).json()
    assert first["rows"] == expected and first["offset"] == path.stat().st_size and not first["more"]
    again = client.get(
        "/api/metrics", params={"id": "numbers-lm", "offset": first["offset"], "file": first["file"]}
    )
    assert again.json()["rows"] == [] and not again.json()["reset"]


def test_run_details_and_config_diff(client: TestClient, runs_dir: Path) -> None:
    run = client.get("/api/run", params={"id": "topics-r8"}).json()
    assert run["summary"] == summary_of(runs_dir, "topics-r8")
    assert run["config"] == yaml.safe_load((runs_dir / "topics-r8" / "config.yaml").read_text())
    diff = client.get("/api/config-diff", params=[("id", "topics-r2"), ("id", "topics-r8")]).json()
    differing = {r["key"]: r["values"] for r in diff["rows"] if r["differs"]}
    assert differing["lora.r"] == [2, 8]
    assert set(differing) == {"lora.r", "output_dir"}  # the two trials differ in rank only
    assert diff["differing"] == 2 and len(diff["rows"]) > 40


def test_sweep_trials_link_to_their_runs(client: TestClient, runs_dir: Path) -> None:
    sweep = client.get("/api/sweep", params={"id": SWEEP}).json()
    report = json.loads((runs_dir / SWEEP / "sweep.json").read_text())
    assert sweep["best_trial"] == report["best_trial"] and sweep["source"] == "sweep.json"
    assert sweep["plots"] == ["learning_curves.png", "metric_vs_rank.png", "metric_vs_trainable.png"]
    for trial in sweep["trials"]:
        run = client.get("/api/run", params={"id": trial["run"]}).json()
        assert run["info"]["sweep"] == SWEEP
        assert run["summary"]["best_metric"] == trial["best_metric"]
    png = client.get("/api/sweep-plot", params={"id": SWEEP, "name": "metric_vs_rank.png"})
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("url", "params", "status", "param"),
    [
        ("/api/run", {}, 400, "id"),
        ("/api/run", {"id": "no-such-run"}, 404, "id"),
        ("/api/run", {"id": "../" + SWEEP}, 404, "id"),
        ("/api/run", {"id": "/etc"}, 404, "id"),
        ("/api/metrics", {"id": "topics-r2", "offset": "-5"}, 400, "offset"),
        ("/api/metrics", {"id": "topics-r2", "offset": "abc"}, 400, "offset"),
        ("/api/config-diff", {"id": "topics-r2"}, 400, "id"),
        ("/api/sweep", {"id": "topics-r2"}, 404, "id"),
        ("/api/sweep-plot", {"id": SWEEP, "name": "../sweep.json"}, 404, "name"),
        ("/api/sweep-plot", {"id": SWEEP, "name": "../../topics-r2/summary.json"}, 404, "name"),
    ],
)
def test_bad_requests_get_json_errors(
    client: TestClient, url: str, params: dict, status: int, param: str
) -> None:
    response = client.get(url, params=params)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_api_key_guards_the_api_but_not_the_page(runs_dir: Path) -> None:
    client = TestClient(ui_app(runs_dir, API_KEY))
    for url in ("/api/info", "/api/runs", "/api/run?id=topics-r2", "/api/sweep?id=" + SWEEP):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
            response = client.get(url, headers=headers)
            assert response.status_code == 401, (url, headers)
            assert response.json()["error"]["type"] == "authentication_error"
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get(url, headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/ui/main.js").status_code == 200


def test_info_says_whether_models_are_served(runs_dir: Path) -> None:
    from tests.ui.fake_server import FakeServer

    assert TestClient(ui_app(runs_dir)).get("/api/info").json()["models_served"] is False
    assert TestClient(ui_app(runs_dir, None, FakeServer())).get("/api/info").json()["models_served"] is True
    mounted = FastAPI()
    mounted.mount("/v1", FakeServer().install(FastAPI(), prefix=""))  # /v1 as a sub-application
    mount_ui(mounted, runs_dir, None)
    assert TestClient(mounted).get("/api/info").json()["models_served"] is True


def test_page_files_are_served_with_their_types(client: TestClient) -> None:
    index = client.get("/")
    assert index.headers["content-type"].startswith("text/html")
    types = {".js": "javascript", ".css": "text/css"}
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.suffix in types:
            response = client.get("/ui/" + path.relative_to(STATIC_DIR).as_posix())
            assert response.status_code == 200 and types[path.suffix] in response.headers["content-type"], (
                path
            )
            assert response.content == path.read_bytes()


def test_the_wheel_carries_every_page_file() -> None:
    """pyproject's package-data patterns match every file under static/ (else pip installs lose them)."""
    from setuptools.config.pyprojecttoml import read_configuration

    config = read_configuration(REPO / "pyproject.toml", expand=False)
    patterns = config["tool"]["setuptools"]["package-data"]["lorakit.ui"]
    ui = STATIC_DIR.parent
    shipped = {p for pattern in patterns for p in ui.glob(pattern) if p.is_file()}
    files = {p for p in STATIC_DIR.rglob("*") if p.is_file()}
    assert files and files == shipped, sorted(str(p.relative_to(ui)) for p in files - shipped)
