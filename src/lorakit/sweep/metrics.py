"""Reading what a trial writes: ``metrics.jsonl`` while it runs, ``summary.json`` when it ends."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Direction = Literal["maximize", "minimize"]
_LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "error", "wer", "cer")


def infer_direction(metric: str) -> Direction:
    """Losses and perplexities go down; accuracy, F1, BLEU and the like go up."""
    return "minimize" if any(w in metric.lower() for w in _LOWER_IS_BETTER) else "maximize"


def metric_value(record: dict[str, Any], metric: str) -> float | None:
    """``metric`` from one metrics.jsonl record (``eval_accuracy`` and ``accuracy`` both match)."""
    for key in (metric, metric.removeprefix("eval_"), f"eval_{metric}"):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


@dataclass
class MetricsTail:
    """Incremental reader of a growing JSON-lines file; only complete lines are consumed."""

    path: Path
    offset: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)

    def poll(self) -> list[dict[str, Any]]:
        """Records appended since the last call."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        new = []
        for line in chunk[: end + 1].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a trainer may interleave a partial line after a crash; skip, do not die
            if isinstance(rec, dict):
                new.append(rec)
        self.records.extend(new)
        return new


def eval_points(records: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """(step, value) of ``metric`` over the validation records, finite values only."""
    out = []
    for rec in records:
        if rec.get("split") != "eval" or not isinstance(rec.get("step"), int):
            continue
        value = metric_value(rec, metric)
        if value is not None and math.isfinite(value):
            out.append((rec["step"], value))
    return out


def best_point(points: list[tuple[int, float]], direction: Direction) -> tuple[int, float] | None:
    if not points:
        return None
    pick = max if direction == "maximize" else min
    return pick(points, key=lambda p: p[1])


def read_summary(path: Path) -> dict[str, Any] | None:
    """The trainer's summary.json, or None when absent or unreadable (a crashed trial)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    tail = MetricsTail(path)
    tail.poll()
    return tail.records
