"""Which adapters the server knows, which are in memory, and loading them on demand (LRU).

Every load goes through ``lorakit.load_adapter`` (checksums, base fingerprint, shapes): an
adapter for another base, or a damaged one, is refused with the loader's message, never served.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.adapter_io.peft_config import read_config_file
from lorakit.errors import AdapterFileError, LorakitError
from lorakit.model import ADAPTER_NAME
from lorakit.paths import check_path_text
from lorakit.tasks.common import TASK_FILE, read_task_file

PEFT_TASKS = {"CAUSAL_LM": "causal_lm", "SEQ_CLS": "classification", "TOKEN_CLS": "token_classification"}


class StoreFull(LorakitError):
    """Every loaded adapter is in use by a running request; try again when one finishes."""


class UnknownAdapter(LorakitError):
    """No adapter of that name is registered."""


@dataclass
class AdapterInfo:
    """A registered adapter: where it is and what it does (read from its files, not loaded)."""

    name: str
    path: Path
    task: str
    labels: list[Any] | None
    use_dora: bool


def describe(name: str, folder: Path, default_task: str) -> AdapterInfo:
    """Read an adapter folder's config and task file; refuse what cannot be served."""
    folder = check_path_text(folder)
    if not folder.is_dir():
        raise AdapterFileError(f"adapter {name!r}: {folder} is not a folder")
    raw = read_config_file(folder / "adapter_config.json")
    if (folder / TASK_FILE).is_file():
        info = read_task_file(folder)
        task, labels = str(info["task"]), info.get("labels")
    else:
        task, labels = PEFT_TASKS.get(str(raw.get("task_type")), default_task), None
    if raw.get("use_dora"):
        raise AdapterFileError(
            f"adapter {name!r} ({folder}) is a DoRA adapter; lorakit serve mixes plain LoRA adapters "
            "only (merge it: lorakit merge)"
        )
    if task in ("classification", "token_classification") and not labels:
        raise AdapterFileError(
            f"adapter {name!r} ({folder}): a {task} adapter needs its labels ({TASK_FILE})"
        )
    return AdapterInfo(name, folder, task, labels, False)


class AdapterStore:
    """Registered adapters, and at most ``max_loaded`` of them in memory (least recently used out).

    ``attach(info)`` / ``detach(info)`` put an adapter onto / take it off the model (the backend
    does it); ``acquire`` pins an adapter for a running request, ``release`` unpins it.
    """

    def __init__(
        self,
        max_loaded: int,
        attach: Callable[[AdapterInfo], None],
        detach: Callable[[AdapterInfo], None],
        default_task: str,
        adapters_dir: Path | None = None,
        on_load: Callable[[str, float], None] | None = None,
        on_evict: Callable[[str], None] | None = None,
    ) -> None:
        self.max_loaded = max_loaded
        self._attach, self._detach = attach, detach
        self.default_task = default_task
        self.adapters_dir = adapters_dir.resolve() if adapters_dir else None
        self.known: dict[str, AdapterInfo] = {}
        self.loaded: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self.pins: dict[str, int] = {}
        self._on_load, self._on_evict = on_load, on_evict
        self.lock = threading.RLock()
        """Guards the registry and residency: lookups come from the HTTP side, loads from the engine."""

    # -- registry ------------------------------------------------------------------------------
    def register(self, name: str, folder: Path) -> AdapterInfo:
        with self.lock:
            if not ADAPTER_NAME.fullmatch(name):
                raise LorakitError(
                    f"adapter name {name!r} is invalid: use 1-64 characters from A-Z a-z 0-9 _ -"
                )
            info = describe(name, folder, self.default_task)
            self.known[name] = info
            return info

    def scan_dir(self) -> list[str]:
        """Names of the adapter folders under ``adapters_dir`` (registered lazily by ``lookup``)."""
        if self.adapters_dir is None or not self.adapters_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.adapters_dir.iterdir()
            if (p / "adapter_config.json").is_file() and ADAPTER_NAME.fullmatch(p.name)
        )

    def inside_dir(self, folder: Path) -> Path:
        """``folder`` resolved, if it lies under ``adapters_dir``; else an error."""
        if self.adapters_dir is None:
            raise LorakitError("runtime loading needs --adapters-dir: adapters load only from under it")
        path = check_path_text(folder)
        resolved = (path if path.is_absolute() else self.adapters_dir / path).resolve()
        if not resolved.is_relative_to(self.adapters_dir):
            raise LorakitError(
                f"lora_path {str(folder)!r} is outside the adapters folder {self.adapters_dir}"
            )
        return resolved

    def lookup(self, name: str) -> AdapterInfo:
        with self.lock:
            info = self.known.get(name)
            if info is not None:
                return info
            if self.adapters_dir is not None and ADAPTER_NAME.fullmatch(name):
                folder = self.adapters_dir / name
                if (folder / "adapter_config.json").is_file():
                    return self.register(name, folder)
            raise UnknownAdapter(f"the model {name!r} does not exist")

    def unregister(self, name: str) -> None:
        with self.lock:
            if self.pins.get(name):
                raise LorakitError(
                    f"adapter {name!r} is in use by running requests; try again when they finish"
                )
            self.evict(name)
            self.known.pop(name, None)

        # -- residency -----------------------------------------------------------------------------

    def acquire(self, name: str) -> AdapterInfo:
        """Make ``name`` resident (loading it, evicting idle ones) and pin it; StoreFull if impossible."""
        with self.lock:
            info = self.lookup(name)
            if name not in self.loaded:
                while len(self.loaded) >= self.max_loaded:
                    idle = next((n for n in self.loaded if not self.pins.get(n)), None)
                    if idle is None:
                        raise StoreFull(f"all {self.max_loaded} loaded adapters are in use")
                    self.evict(idle)
                start = time.perf_counter()
                self._attach(info)
                self.loaded[name] = None
                if self._on_load:
                    self._on_load(name, time.perf_counter() - start)
            self.loaded.move_to_end(name)
            self.pins[name] = self.pins.get(name, 0) + 1
            return info

    def release(self, name: str) -> None:
        with self.lock:
            count = self.pins.get(name, 0) - 1
            if count > 0:
                self.pins[name] = count
            else:
                self.pins.pop(name, None)

    def evict(self, name: str) -> None:
        with self.lock:
            if name in self.loaded:
                del self.loaded[name]
                self._detach(self.known[name])
                if self._on_evict:
                    self._on_evict(name)
