"""The run folders under ``--runs``: discovery, status and the figures the runs table shows.

A run folder is what ``lorakit train`` writes (config.yaml, metrics.jsonl, summary.json); a sweep
folder holds sweep.json or sweep_state.json and its trials under ``trials/``. Run and sweep ids
are paths relative to the runs folder ('/'-separated, '.' for the runs folder itself); the page
only ever sends back ids this module listed, so nothing outside the runs folder can be named.

summary.json is written when a run ends. Until then (or when metrics.jsonl is newer, which is a
resumed run) the run counts as ``running`` while its files keep changing, and ``interrupted``
once they have not changed for ``STALE_AFTER_S``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lorakit.ui.tail import finite_json, read_since, read_small

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE = "config.yaml", "metrics.jsonl", "summary.json"
SWEEP_FILES = ("sweep.json", "sweep_state.json")
RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE)
SKIP_DIRS = frozenset({"checkpoints", "adapter", "best_adapter", "tensorboard", "plots", "merged"})
MAX_DEPTH = 4
"""How deep under the runs folder run folders are looked for (sweep trials sit at depth 3)."""
STALE_AFTER_S = 900.0
INFO_FIELDS = ("task", "model", "step", "metric", "best_metric", "best_step", "trainable_params")
INFO_FIELDS += ("total_params", "trainable_percent", "wall_time_s", "error")
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML has it (about 10x faster on a run config), else the Python one."""
"""A run without summary whose files have not changed for this long is shown as interrupted."""


@dataclass(frozen=True)
class Found:
    """Run and sweep folders under the runs folder, keyed by id."""

    runs: dict[str, Path]
    sweeps: dict[str, Path]
    sweep_of: dict[str, str]
    """Run id -> id of the sweep it is a trial of."""


def folder_id(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return rel if rel else "."


def discover(root: Path) -> Found:
    """Walk ``root`` (symlinked folders are not followed) for run and sweep folders."""
    runs: dict[str, Path] = {}
    sweeps: dict[str, Path] = {}
    sweep_of: dict[str, str] = {}
    stack: list[tuple[Path, int, str | None]] = [(root, 0, None)]
    while stack:
        folder, depth, sweep = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        names = {e.name for e in entries}
        here = folder_id(root, folder)
        if any(n in names for n in SWEEP_FILES):
            sweeps[here] = folder
            sweep = here
        elif any(n in names for n in RUN_FILES):
            runs[here] = folder
            if sweep is not None:
                sweep_of[here] = sweep
            continue  # a run's own sub-folders hold no further runs
        if depth >= MAX_DEPTH:
            continue
        for e in entries:
            if e.name in SKIP_DIRS or e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
                continue
            stack.append((Path(e.path), depth + 1, sweep))
    return Found(dict(sorted(runs.items())), dict(sorted(sweeps.items())), sweep_of)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from a regular file of the runs folder; None when absent or unreadable."""
    text = read_small(path)
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return finite_json(data) if isinstance(data, dict) else None


def read_yaml(path: Path) -> dict[str, Any] | None:
    """A YAML mapping from a regular file of the runs folder; None when absent or unreadable."""
    text = read_small(path)
    try:
        data = yaml.load(text, Loader=SAFE_LOADER) if text is not None else None
    except yaml.YAMLError:
        return None
    return finite_json(data) if isinstance(data, dict) else None


def mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


@dataclass
class _Tail:
    """What the runs table needs from one metrics.jsonl, kept up to date incrementally."""

    offset: int = 0
    file_id: str = ""
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    last_step: int | None = None

    def update(self, path: Path) -> None:
        while True:
            chunk = read_since(path, self.offset, self.file_id)
            if chunk.reset:
                self.eval_rows, self.last_step = [], None
            self.offset, self.file_id = chunk.offset, chunk.file_id
            for row in chunk.rows:
                step = row.get("step")
                if isinstance(step, int):
                    self.last_step = step if self.last_step is None else max(self.last_step, step)
                if row.get("split") == "eval":
                    self.eval_rows.append(row)
            if not chunk.more:
                return


class RunIndex:
    """Run summaries for the runs table.

    A finished run is described by its summary.json alone; a running one by its config.yaml
    (parsed again only when it changes) and its metrics.jsonl, read incrementally between calls.
    """

    def __init__(self, root: Path, stale_after_s: float = STALE_AFTER_S) -> None:
        self.root = root
        self.stale_after_s = stale_after_s
        self._tails: dict[Path, _Tail] = {}
        self._configs: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def find(self) -> Found:
        return discover(self.root)

    def config(self, folder: Path) -> dict[str, Any]:
        """The run's parsed config.yaml ({} when absent or unreadable), cached by mtime and size."""
        path = folder / CONFIG_FILE
        try:
            st = path.stat()
        except OSError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._configs.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        config = read_yaml(path) or {}
        with self._lock:
            self._configs[path] = (stamp, config)
        return config

    def info(self, run_id: str, folder: Path, sweep: str | None = None) -> dict[str, Any]:
        """Status, task, model, parameters, best metric, step and wall time of one run."""
        summary = read_json(folder / SUMMARY_FILE)
        status, updated = self._status(folder, summary)
        info: dict[str, Any] = {
            "id": run_id,
            "name": folder.name if run_id != "." else self.root.name,
            "sweep": sweep,
            "status": status,
            "updated": updated,
            **dict.fromkeys(INFO_FIELDS),
        }
        if summary is not None:
            for key in ("task", "model", "best_metric", "best_step", "trainable_params", "total_params"):
                info[key] = summary.get(key)
            for key in ("trainable_percent", "wall_time_s", "error"):
                info[key] = summary.get(key)
            info["metric"], info["step"] = summary.get("metric_for_best"), summary.get("final_step")
        if status in ("running", "interrupted"):
            self._live(info, folder)
        return info

    def _status(self, folder: Path, summary: dict[str, Any] | None) -> tuple[str, float | None]:
        times = [t for t in (mtime(folder / n) for n in RUN_FILES) if t is not None]
        updated = max(times) if times else None
        summary_time = mtime(folder / SUMMARY_FILE)
        metrics_time = mtime(folder / METRICS_FILE)
        finished = summary is not None and summary_time is not None
        if finished and (metrics_time is None or metrics_time <= summary_time + 1.0):  # type: ignore[operator]
            return str(summary.get("status") or "unknown"), updated  # type: ignore[union-attr]
        if updated is not None and time.time() - updated < self.stale_after_s:
            return "running", updated
        return "interrupted", updated

    def _live(self, info: dict[str, Any], folder: Path) -> None:
        """Task, model, latest step and best metric so far of a run that has not ended."""
        config = self.config(folder)
        train_cfg = config.get("train") if isinstance(config.get("train"), dict) else {}
        with self._lock:
            tail = self._tails.setdefault(folder / METRICS_FILE, _Tail())
            tail.update(folder / METRICS_FILE)
            eval_rows, info["step"] = list(tail.eval_rows), tail.last_step
        info["task"] = config.get("task", info["task"])
        info["model"] = config.get("model", info["model"])
        metric = train_cfg.get("metric_for_best") or _default_metric(info["task"])
        if metric is None:
            return
        greater = train_cfg.get("greater_is_better")
        if greater is None:  # the trainer's own default (training.setup.metric_choice)
            greater = metric not in ("loss", "perplexity")
        points = [
            (r["step"], float(r[metric]))
            for r in eval_rows
            if isinstance(r.get(metric), (int, float)) and isinstance(r.get("step"), int)
        ]
        info["metric"], info["best_step"], info["best_metric"] = metric, None, None
        if points:
            pick = max if greater else min
            info["best_step"], info["best_metric"] = pick(points, key=lambda p: p[1])


def _default_metric(task: Any) -> str | None:
    from lorakit.tasks import DEFAULT_METRIC

    return DEFAULT_METRIC.get(task) if isinstance(task, str) else None
