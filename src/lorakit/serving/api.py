"""The FastAPI application: auth, errors, models, health, metrics, adapter admin; generation in routes."""

from __future__ import annotations

import asyncio
import hmac
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lorakit.errors import LorakitError
from lorakit.serving import routes
from lorakit.serving.errors import ApiError, BodyTooLarge, GateMiddleware, error_body, error_response
from lorakit.serving.schemas import LoadAdapterRequest, UnloadAdapterRequest
from lorakit.serving.state import ServerState
from lorakit.serving.store import UnknownAdapter


def _auth(state: ServerState):
    async def check(request: Request) -> None:
        key = state.config.api_key
        if key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            raise ApiError(
                401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
            )

    return Depends(check)


def _install_errors(app: FastAPI, state: ServerState) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        message = f"{param}: {err.get('msg')}" if param else str(err.get("msg"))
        return error_response(ApiError(400, message, param=param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):
            return error_response(ApiError(413, f"request body exceeds {state.config.max_body_bytes} bytes"))
        status = exc.status_code if exc.status_code in (400, 401, 404, 405, 413) else 400
        return error_response(ApiError(status, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(500, f"internal error ({type(exc).__name__})"), 500)


def create_app(state: ServerState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.engine.start()
        yield
        await asyncio.to_thread(state.engine.stop)

    app = FastAPI(title="lorakit serve", version="1", lifespan=lifespan)
    app.add_middleware(
        GateMiddleware, max_bytes=state.config.max_body_bytes, is_draining=lambda: state.draining
    )
    _install_errors(app, state)
    auth = _auth(state)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        state.metrics.requests.labels(path, str(response.status_code)).inc()
        return response

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.draining:
            return JSONResponse({"status": "draining"}, 503)
        return JSONResponse({"status": "ok", "model": state.backend.id, "running": state.engine.load})

    @app.get("/metrics", dependencies=[auth])
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[auth])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": await asyncio.to_thread(state.model_cards)}

    @app.post("/v1/load_lora_adapter", dependencies=[auth])
    async def load(body: LoadAdapterRequest) -> dict[str, Any]:
        state.require_runtime_loading()
        try:
            folder = state.store.inside_dir(body.lora_path)
        except LorakitError as e:
            raise ApiError(400, str(e), param="lora_path") from None
        await state.run_on_engine(lambda: state.load_adapter(body.lora_name, folder))
        return {"object": "lora_adapter", "id": body.lora_name, "loaded": True}

    @app.post("/v1/unload_lora_adapter", dependencies=[auth])
    async def unload(body: UnloadAdapterRequest) -> dict[str, Any]:
        state.require_runtime_loading()
        if body.lora_name not in state.store.known:
            raise ApiError(
                404, f"the model {body.lora_name!r} does not exist", param="lora_name", code="model_not_found"
            )
        await state.run_on_engine(lambda: state.store.unregister(body.lora_name))
        return {"object": "lora_adapter", "id": body.lora_name, "loaded": False}

    routes.install(app, state, auth)
    _mount_ui(app, state)
    return app


def _mount_ui(app: FastAPI, state: ServerState) -> None:
    try:
        from lorakit.ui import mount_ui  # the web page (optional package)
    except ImportError:
        return
    mount_ui(app, state.config.runs, state.config.api_key)


__all__ = ["UnknownAdapter", "create_app"]
