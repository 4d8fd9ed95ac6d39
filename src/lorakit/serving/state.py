"""What one running server holds: settings, model, adapter store, engine, metrics; building it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lorakit.errors import LorakitError
from lorakit.heap import trim_heap
from lorakit.serving.backend import Backend
from lorakit.serving.config import API_KEY_ENV, ServeConfig
from lorakit.serving.engine import Engine, QueueFull
from lorakit.serving.errors import ApiError
from lorakit.serving.metrics import ServerMetrics
from lorakit.serving.store import AdapterInfo, AdapterStore, UnknownAdapter


def pick_device(spec: str) -> str:
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not (spec == "cpu" or spec.startswith("cuda")):
        raise LorakitError(f"device {spec!r} is unknown; use cpu, cuda, cuda:N or auto")
    return spec


class ServerState:
    def __init__(self, config: ServeConfig, backend: Backend | None = None) -> None:
        if config.api_key is None and os.environ.get(API_KEY_ENV):
            config = config.model_copy(update={"api_key": os.environ[API_KEY_ENV]})
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.config = config
        self.metrics = ServerMetrics()
        self.backend = backend or Backend(
            config.base, pick_device(config.device), packed_weights=config.packed_weights
        )
        self.store = AdapterStore(
            config.max_loaded,
            self.backend.attach,
            self.backend.detach,
            self.backend.task,
            config.adapters_dir,
            on_load=self._loaded,
            on_evict=lambda name: self.metrics.adapter_evictions.inc(),
        )
        self.engine = Engine(
            self.backend,
            self.store,
            config.max_batch,
            config.max_queue,
            self.metrics,
            config.strategy,
            on_idle=trim_heap,  # the server owns its process; glibc keeps a busy spell's peak otherwise
        )
        self.draining = False
        for name, folder in config.adapters.items():  # named adapters: checked and loaded up front
            self.load_adapter(name, folder)

    def _loaded(self, name: str, seconds: float) -> None:
        self.metrics.adapter_loads.inc()
        self.metrics.adapter_load_seconds.observe(seconds)

    def load_adapter(self, name: str, folder: Path) -> AdapterInfo:
        """Register and load (checking it fully), then leave it resident but unpinned."""
        with self.store.lock:
            if name in self.store.known or name == self.backend.id:
                raise LorakitError(f"an adapter named {name!r} is already served")
            info = self.store.register(name, folder)
            try:
                self.backend.accepts(info)
                self.store.acquire(name)
            except Exception:
                self.store.known.pop(name, None)
                raise
            self.store.release(name)
        return info

    def require_runtime_loading(self) -> None:
        if not self.config.allow_runtime_loading:
            raise ApiError(
                400, "runtime adapter loading is disabled (start the server with --allow-runtime-loading)"
            )

    def resolve(self, model: str, param: str = "model") -> AdapterInfo | None:
        """The adapter a request names (None for the base model); 404 for an unknown name."""
        if model == self.backend.id:
            return None
        try:
            return self.store.lookup(model)
        except UnknownAdapter as e:
            raise ApiError(404, str(e), param=param, code="model_not_found") from None
        except LorakitError as e:
            raise ApiError(
                400, f"adapter {model!r} cannot be served: {e}", param=param, code="adapter_invalid"
            ) from None

    async def run_on_engine(self, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.wrap_future(self.engine.call(fn))
        except UnknownAdapter as e:
            raise ApiError(404, str(e), code="model_not_found") from None
        except LorakitError as e:
            raise ApiError(400, str(e)) from None

    def model_cards(self) -> list[dict[str, Any]]:
        base = {
            "id": self.backend.id,
            "object": "model",
            "created": 0,
            "owned_by": "lorakit",
            "parent": None,
            "lorakit": {"kind": "base", "task": self.backend.task, "labels": None},
        }
        cards = [base]
        for name in sorted(set(self.store.known) | set(self.store.scan_dir())):
            try:
                info = self.store.lookup(name)
            except LorakitError:
                continue  # a broken folder is reported when it is requested
            cards.append(
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "lorakit",
                    "parent": self.backend.id,
                    "lorakit": {
                        "kind": "adapter",
                        "task": info.task,
                        "labels": None if info.labels is None else [str(x) for x in info.labels],
                        "loaded": name in self.store.loaded,
                    },
                }
            )
        return cards

    def queue_error(self, e: QueueFull) -> ApiError:
        return ApiError(429, f"the server is busy: {e}; retry later", code="queue_full", retry_after=1)
