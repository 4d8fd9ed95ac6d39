"""The page's HTTP side: static files at ``/`` and ``/ui/``, JSON routes under ``/api/``.

``mount_ui`` adds both to an existing FastAPI app (``lorakit serve`` calls it next to its
``/v1`` routes; ``lorakit ui`` calls it on an empty app). Errors are JSON objects of the shape
``{"error": {"message", "type", "param", "code"}}`` (SERVING_API.md); with an API key every
``/api/`` route needs ``Authorization: Bearer <key>``, the static files do not.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from lorakit.ui.configs import config_diff
from lorakit.ui.runs import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, RunIndex, read_json, read_yaml
from lorakit.ui.sweeps import plot_names, read_sweep
from lorakit.ui.tail import read_since

STATIC_DIR = Path(__file__).parent / "static"
MAX_DIFF_RUNS = 8
BAD_REQUEST = "invalid_request_error"


class UiApiError(Exception):
    """An error answered as a JSON error object with an HTTP status."""

    def __init__(self, status: int, message: str, kind: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


def error_response(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def _key_check(api_key: str | None) -> Any:
    expected = f"Bearer {api_key}".encode() if api_key else None

    def check(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            why = "missing" if not given else "wrong"
            raise UiApiError(
                401, f"API key {why}: send 'Authorization: Bearer <key>'", "authentication_error"
            )

    return check


def mount_ui(app: FastAPI, runs_dir: Path, api_key: str | None) -> None:
    """Serve the page at ``/`` and its JSON routes under ``/api/`` for the runs in ``runs_dir``."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UiApiError)
        return error_response(exc.status, exc.message, exc.kind, exc.param)

    app.add_exception_handler(UiApiError, handle)
    app.include_router(build_router(RunIndex(Path(runs_dir)), api_key, lambda: serves_models(app)))
    app.mount("/ui", StaticFiles(directory=STATIC_DIR), name="lorakit-ui")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def serves_models(app: FastAPI) -> bool:
    """Whether the app answers GET /v1/models (``lorakit serve`` does, ``lorakit ui`` does not)."""
    return "/v1/models" in _paths(app.routes, "")


def _paths(routes: list[Any], prefix: str) -> set[str]:
    """Every route path, mounted sub-apps' routes included (a Mount has ``routes``)."""
    found = set()
    for route in routes:
        path = prefix + str(getattr(route, "path", ""))
        found.add(path)
        found |= _paths(list(getattr(route, "routes", None) or []), path)
    return found


def build_router(index: RunIndex, api_key: str | None, models_served: Callable[[], bool]) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(_key_check(api_key))])

    @router.get("/info")
    def info() -> dict[str, Any]:
        """What this server offers: the page asks before calling /v1/models."""
        from lorakit import __version__

        return {"version": __version__, "runs_dir": index.root.name, "models_served": models_served()}

    def run_folder(run_id: str | None, param: str = "id") -> tuple[str, Path, str | None]:
        if not run_id:
            raise UiApiError(400, f"query parameter '{param}' (a run id) is required", BAD_REQUEST, param)
        found = index.find()
        if run_id not in found.runs:
            raise UiApiError(404, f"no run {run_id!r} under the runs folder", "not_found_error", param)
        return run_id, found.runs[run_id], found.sweep_of.get(run_id)

    def sweep_folder(sweep_id: str | None) -> tuple[str, Path]:
        if not sweep_id:
            raise UiApiError(400, "query parameter 'id' (a sweep id) is required", BAD_REQUEST, "id")
        found = index.find()
        if sweep_id not in found.sweeps:
            raise UiApiError(404, f"no sweep {sweep_id!r} under the runs folder", "not_found_error", "id")
        return sweep_id, found.sweeps[sweep_id]

    @router.get("/runs")
    def runs() -> dict[str, Any]:
        """Every run outside sweeps, and every sweep with its trial counts."""
        found = index.find()
        listed = [index.info(i, p) for i, p in found.runs.items() if i not in found.sweep_of]
        sweeps = []
        for sweep_id, folder in found.sweeps.items():
            s = read_sweep(sweep_id, folder)
            best = next((t for t in s["trials"] if t["trial"] == s["best_trial"]), None)
            sweeps.append(
                {
                    "id": sweep_id,
                    "name": s["name"],
                    "metric": s["metric"],
                    "counts": s["counts"],
                    "finished": s["finished"],
                    "best_metric": best["best_metric"] if best else None,
                }
            )
        return {"runs_dir": index.root.name, "runs": listed, "sweeps": sweeps}

    @router.get("/run")
    def run(id: str | None = None) -> dict[str, Any]:
        run_id, folder, sweep = run_folder(id)
        return {
            "info": index.info(run_id, folder, sweep),
            "summary": read_json(folder / SUMMARY_FILE),
            "config": read_yaml(folder / CONFIG_FILE),
        }

    @router.get("/metrics")
    def metrics(
        id: str | None = None,
        offset: str = "0",
        file: str = "",
    ) -> dict[str, Any]:
        """metrics.jsonl rows appended after byte ``offset`` of the file identified by ``file``."""
        _, folder, _ = run_folder(id)
        if not offset.isdigit() or len(offset) > 15:
            raise UiApiError(
                400,
                f"offset must be a byte offset (0 or more), got {offset!r}",
                BAD_REQUEST,
                "offset",
            )
        chunk = read_since(folder / METRICS_FILE, int(offset), file)
        return {
            "rows": chunk.rows,
            "offset": chunk.offset,
            "file": chunk.file_id,
            "reset": chunk.reset,
            "more": chunk.more,
        }

    @router.get("/config-diff")
    def diff(id: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
        """The configs of 2..MAX_DIFF_RUNS runs, key by key."""
        id = id or []
        if not 2 <= len(id) <= MAX_DIFF_RUNS or len(set(id)) != len(id):
            raise UiApiError(
                400,
                f"give 2 to {MAX_DIFF_RUNS} different run ids (id=...&id=...), got {len(id)}",
                BAD_REQUEST,
                "id",
            )
        folders = [run_folder(i)[1] for i in id]
        return config_diff({i: read_yaml(f / CONFIG_FILE) for i, f in zip(id, folders, strict=True)})

    @router.get("/sweep")
    def sweep(id: str | None = None) -> dict[str, Any]:
        return read_sweep(*sweep_folder(id))

    @router.get("/sweep-plot")
    def sweep_plot(id: str | None = None, name: str = "") -> FileResponse:
        _, folder = sweep_folder(id)
        if name not in plot_names(folder):
            raise UiApiError(404, f"sweep {id!r} has no plot {name!r}", "not_found_error", "name")
        return FileResponse(folder / "plots" / name, media_type="image/png")

    return router
