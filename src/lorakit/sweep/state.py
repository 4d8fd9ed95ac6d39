"""The sweep state file: which trials ran, how they ended, where their files are.

Without shared storage it is the single source of truth for resuming: a rerun skips trials that
finished (completed, failed or pruned) and restarts a trial left ``running`` by an interrupted
sweep in a fresh directory. Written as JSON, atomically, after every change.

With ``--storage`` the trials live in the shared Optuna study instead, and the state file only
names that study (storage, study name, fingerprint), so the folder cannot be resumed against a
different study or without one.
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
TRIALS_DIR = "trials"
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
    host: str | None = None
    """Machine that ran the trial, whose --out folder holds its directory (shared sweeps)."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass
class SweepState:
    """Everything needed to resume a sweep."""

    fingerprint: dict[str, Any]
    """What makes two invocations the same sweep (base config hash, budget, search, ...)."""
    trials: list[TrialRecord] = field(default_factory=list)
    """The trials (empty when they live in shared storage)."""
    storage: str | None = None
    """Where the shared study lives (password masked), or None for a sweep kept in this file."""
    study: str | None = None
    """Name of the shared Optuna study, with ``storage``."""

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
            "storage": self.storage,
            "study": self.study,
        }
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> SweepState:
        try:
            data = json.loads(path.read_text())
            if data.get("version") != _VERSION:
                raise SweepStateError(f"{path}: state version {data.get('version')!r}, expected {_VERSION}")
            trials = [TrialRecord(**t) for t in data["trials"]]
            storage, study = data.get("storage"), data.get("study")
            return cls(fingerprint=data["fingerprint"], trials=trials, storage=storage, study=study)
        except (OSError, ValueError, KeyError, TypeError) as e:
            if isinstance(e, SweepStateError):
                raise
            raise SweepStateError(f"{path}: unreadable sweep state ({e}); use a new --out directory") from e


def open_state(
    out_dir: Path, fingerprint: dict[str, Any], storage: str | None = None, study: str | None = None
) -> SweepState:
    """Load the state of ``out_dir`` when it is the same sweep, else start a new one.

    ``storage`` / ``study`` name the shared study of a ``--storage`` sweep (None: trials are kept
    in the state file); a folder that belongs to another study, or to none, is refused.
    """
    path = out_dir / STATE_FILE
    if not path.exists():
        return SweepState(fingerprint=fingerprint, storage=storage, study=study)
    state = SweepState.load(path)
    _check_same_home(state, out_dir, storage, study)
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


def _check_same_home(state: SweepState, out_dir: Path, storage: str | None, study: str | None) -> None:
    """The folder and the command must agree on where the trials live."""
    if (state.storage, state.study) == (storage, study):
        return
    if state.storage is None:
        raise SweepStateError(
            f"{out_dir} holds a sweep kept in {STATE_FILE} ({len(state.trials)} trial(s)), not in shared "
            "storage: rerun it without --storage, or use another --out directory"
        )
    where = f"study {state.study!r} in {state.storage}"
    if storage is None:
        raise SweepStateError(
            f"{out_dir} belongs to the shared {where}: pass --storage {state.storage} "
            f"--study {state.study} to resume it or build its report"
        )
    raise SweepStateError(
        f"{out_dir} belongs to the shared {where}, not to study {study!r} in {storage}: "
        "use the original --storage / --study, or another --out directory"
    )


def trial_dir(number: int, attempt: int) -> str:
    """A trial's directory, relative to the sweep directory; each attempt gets its own."""
    return f"{TRIALS_DIR}/trial-{number:03d}" + (f"-attempt{attempt}" if attempt > 1 else "")


def params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)
