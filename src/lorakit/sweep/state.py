"""The sweep state file: which trials ran, how they ended, where their files are.

It is the single source of truth for resuming: a rerun skips trials that finished (completed,
failed or pruned) and restarts a trial left ``running`` by an interrupted sweep in a fresh
directory. Written as JSON, atomically, after every change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lorakit.adapter_io.integrity import atomic_write_text
from lorakit.errors import LorakitError

TrialStatus = Literal["running", "completed", "failed", "pruned"]
FINISHED: tuple[TrialStatus, ...] = ("completed", "failed", "pruned")
STATE_FILE = "sweep_state.json"
_VERSION = 1


class SweepStateError(LorakitError):
    """The sweep directory holds a state file that is unreadable or belongs to another sweep."""


@dataclass
class TrialRecord:
    """One trial of the sweep, as recorded in the state file."""

    number: int
    """Trial number (from 1), stable across resumes."""
    params: dict[str, Any]
    """The swept values, keyed by dotted config key."""
    status: TrialStatus = "running"
    """running (or interrupted), completed, failed, pruned."""
    attempt: int = 1
    """1 for the first run; incremented each time an interrupted or retried trial starts again."""
    dir: str = ""
    """The trial's output directory, relative to the sweep directory."""
    train_status: str | None = None
    """``status`` from the trial's summary.json (completed, stopped_early, failed)."""
    best_metric: float | None = None
    """Best validation metric of the trial (the value at pruning time for pruned trials)."""
    best_step: int | None = None
    """Step of ``best_metric``."""
    final_step: int | None = None
    """Last optimisation step reached."""
    trainable_params: int | None = None
    """Trainable parameter count reported by the trial."""
    trainable_percent: float | None = None
    """Trainable share of all parameters, in percent."""
    wall_time_s: float | None = None
    """Training wall time reported by the trainer (process time when it reported none)."""
    process_time_s: float | None = None
    """Wall time of the whole trial process, start-up included."""
    reason: str | None = None
    """Why the trial failed or was pruned."""
    intermediate: dict[str, float] = field(default_factory=dict)
    """Validation metric by step (JSON keys are strings), replayed into the pruner on resume."""
    previous_dirs: list[str] = field(default_factory=list)
    """Directories of interrupted attempts, left for inspection."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass
class SweepState:
    """Everything needed to resume a sweep."""

    fingerprint: dict[str, Any]
    """What makes two invocations the same sweep (base config hash, budget, search, ...)."""
    trials: list[TrialRecord] = field(default_factory=list)

    def find(self, params: dict[str, Any]) -> TrialRecord | None:
        """The record with exactly these params (compared as canonical JSON)."""
        key = params_key(params)
        for t in self.trials:
            if params_key(t.params) == key:
                return t
        return None

    def next_number(self) -> int:
        return max((t.number for t in self.trials), default=0) + 1

    def save(self, path: Path) -> None:
        data = {
            "version": _VERSION,
            "fingerprint": self.fingerprint,
            "trials": [asdict(t) for t in self.trials],
        }
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> SweepState:
        try:
            data = json.loads(path.read_text())
            if data.get("version") != _VERSION:
                raise SweepStateError(f"{path}: state version {data.get('version')!r}, expected {_VERSION}")
            trials = [TrialRecord(**t) for t in data["trials"]]
            return cls(fingerprint=data["fingerprint"], trials=trials)
        except (OSError, ValueError, KeyError, TypeError) as e:
            if isinstance(e, SweepStateError):
                raise
            raise SweepStateError(f"{path}: unreadable sweep state ({e}); use a new --out directory") from e


def open_state(out_dir: Path, fingerprint: dict[str, Any]) -> SweepState:
    """Load the state of ``out_dir`` when it is the same sweep, else start a new one."""
    path = out_dir / STATE_FILE
    if not path.exists():
        return SweepState(fingerprint=fingerprint)
    state = SweepState.load(path)
    diffs = [
        k
        for k in sorted(set(fingerprint) | set(state.fingerprint))
        if fingerprint.get(k) != state.fingerprint.get(k)
    ]
    if diffs:
        detail = "; ".join(
            f"{k}: was {state.fingerprint.get(k)!r}, now {fingerprint.get(k)!r}" for k in diffs
        )
        raise SweepStateError(
            f"{out_dir} holds a different sweep ({detail}). Use another --out directory, "
            "or rerun with the original settings to resume it."
        )
    return state


def params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)
