"""A sweep shared by several processes, on one machine or many, through an Optuna study.

Every trial of the sweep is a *slot*: its number (grid position, or sample index for random /
TPE search). A worker queues the slots nobody has queued yet, as waiting Optuna trials that carry
the slot number and attempt, then pops waiting trials: the storage hands each waiting trial to
exactly one worker. Two workers starting at once may queue a slot twice; the copy with the lower
Optuna number is the real one, the other is voided when popped, so each slot runs once and the
sweep never exceeds its trial budget.

A running trial records its worker and a heartbeat. When its worker is gone (on this machine and
its process has exited, or silent for ``stale_after_s``), the first worker to notice ends the
trial as interrupted (the storage accepts one ending only) and the slot is queued again as its
next attempt, in a fresh directory. Ctrl-C does the same for the worker's own trials.
"""

from __future__ import annotations

import json
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from lorakit.sweep.ledger import Claim
from lorakit.sweep.options import SweepOptions
from lorakit.sweep.search import Search, quiet_optuna
from lorakit.sweep.space import Value
from lorakit.sweep.state import (
    FINISHED,
    STATE_FILE,
    SweepState,
    SweepStateError,
    TrialRecord,
    open_state,
    trial_dir,
)
from lorakit.sweep.storage import masked, open_storage, study_exists
from lorakit.sweep.workers import Worker

FINGERPRINT = "lorakit.fingerprint"
NUMBER, ATTEMPT, PREVIOUS = "lorakit.number", "lorakit.attempt", "lorakit.previous_dirs"
RECORD, WORKER, HEARTBEAT = "lorakit.record", "lorakit.worker", "lorakit.heartbeat"
INTERRUPTED, VOID = "lorakit.interrupted", "lorakit.void"  # INTERRUPTED.<n>: a study attribute
_RESCAN_S = 5.0  # how often an idle worker looks for trials to take over


@dataclass
class _Attempt:
    """One attempt at a slot, read from its Optuna trial."""

    frozen: FrozenTrial
    number: int
    attempt: int

    @property
    def attrs(self) -> dict[str, Any]:
        return self.frozen.user_attrs

    @property
    def status(self) -> str:
        """waiting, running, interrupted, or the finished record's status."""
        state = self.frozen.state
        if state == TrialState.WAITING:
            return "waiting"
        if state == TrialState.RUNNING:
            return "running"
        status = self.attrs.get(RECORD, {}).get("status")
        # A finish saves the final record before it ends the trial; an interruption ends it as failed
        # while the record still says running.
        return str(status) if status in FINISHED else "interrupted"

    @property
    def dirs(self) -> list[str]:
        """This attempt's directory after those of the attempts before it."""
        return [*self.attrs.get(PREVIOUS, []), trial_dir(self.number, self.attempt)]


class SharedLedger:
    """The trials of a sweep in shared storage, for one of possibly many worker processes."""

    def __init__(self, options: SweepOptions, echo: Callable[[str], None], report_only: bool = False) -> None:
        assert options.storage is not None
        self.opts, self.echo = options, echo
        self.where, self.name = masked(options.storage), options.study
        storage = open_storage(options.storage, must_exist=report_only)
        state_path = options.out_dir / STATE_FILE
        had_state = state_path.exists()
        self.local = open_state(options.out_dir, options.fingerprint(), self.where, self.name)
        if (had_state or report_only) and not study_exists(storage, self.name):
            raise SweepStateError(
                f"{self.where} has no study {self.name!r}"
                + (f", yet {state_path} names it (deleted? another storage?)" if had_state else "")
            )
        self.worker = Worker.this_process()
        seed = (options.seed * 1_000_003 + zlib.crc32(self.worker.id.encode())) % 2**32
        self.search = Search(
            options.space, options.search, options.direction, seed, options.pruner, storage, self.name
        )
        self._check_fingerprint()
        self.total = max(options.total(), *(n for n, _ in self._attempts()), 0)
        kept = ("completed", "pruned") if options.retry_failed else FINISHED
        self._before = sum(a.status in kept for a in self._latest().values())
        self._last_beat = self._last_scan = 0.0
        if not report_only:
            self.local.save(state_path)
            self._reclaim()
            self._fill(retry_failed=options.retry_failed)

    # ---------------------------------------------------------------- Ledger protocol

    def finished_before(self) -> int:
        return self._before

    def claim(self) -> Claim | None:
        if time.monotonic() - self._last_scan < _RESCAN_S:
            return None  # idle: nothing was left at the last look
        while True:
            self._reclaim()
            waiting = self.search.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not waiting:  # (queued duplicates count: popping them is how they get voided)
                self._last_scan = time.monotonic()
                return None
            trial, params = self.search.pop()
            attrs = trial.user_attrs
            if NUMBER not in attrs:  # another worker took the last waiting trial: Optuna made a new one
                self._void(trial, "no queued trial was left")
                continue
            key = (int(attrs[NUMBER]), int(attrs[ATTEMPT]))
            if self._attempts()[key].frozen.number != trial.number:
                self._void(trial, "duplicate of a trial queued earlier for the same slot")
                continue
            rec = TrialRecord(
                number=key[0],
                params=params,
                attempt=key[1],
                dir=trial_dir(*key),
                previous_dirs=attrs.get(PREVIOUS, []),
                host=socket.gethostname(),
            )
            trial.set_user_attr(WORKER, self.worker.as_attr())
            trial.set_user_attr(HEARTBEAT, time.time())
            trial.set_user_attr(RECORD, asdict(rec))
            self.total = max(self.total, rec.number)
            return Claim(record=rec, trial=trial)

    def report(self, claim: Claim, step: int, value: float) -> bool:
        try:
            return self.search.report(claim.trial, step, value)
        except UpdateFinishedTrialError:
            return True  # taken over: stop it; finish() then says so

    def beat(self, claims: list[Claim]) -> list[Claim]:
        if time.monotonic() - self._last_beat < self.opts.heartbeat_s:
            return []
        self._last_beat = time.monotonic()
        lost = []
        for claim in claims:
            try:
                claim.trial.set_user_attr(HEARTBEAT, time.time())
            except UpdateFinishedTrialError:
                lost.append(claim)
        return lost

    def finish(self, claim: Claim) -> bool:
        rec = claim.record
        try:
            claim.trial.set_user_attr(RECORD, asdict(rec))
            self.search.tell(claim.trial, rec.status, rec.best_metric)
        except (UpdateFinishedTrialError, ValueError):  # ended meanwhile by another worker
            return False
        return True

    def interrupt(self, claims: list[Claim]) -> None:
        for claim in claims:
            self._end_interrupted(claim.trial.number, f"stopped on worker {self.worker.id}")
        self._fill(retry_failed=False)

    def snapshot(self) -> SweepState:
        trials = []
        for number, latest in sorted(self._latest(started_only=True).items()):
            trials.append(self._record(number, latest))
        return SweepState(
            fingerprint=self.local.fingerprint, trials=trials, storage=self.where, study=self.name
        )

    def unfinished(self) -> int:
        latest = self._latest()
        return sum(
            n not in latest or latest[n].status in ("waiting", "running", "interrupted")
            for n in range(1, self.total + 1)
        )

    # ---------------------------------------------------------------- reading the study

    def _attempts(self) -> dict[tuple[int, int], _Attempt]:
        """The real attempt of every (slot, attempt) queued: the lowest-numbered copy."""
        out: dict[tuple[int, int], _Attempt] = {}
        for t in self.search.study.get_trials(deepcopy=False):
            if NUMBER not in t.user_attrs or VOID in t.user_attrs:
                continue
            key = (int(t.user_attrs[NUMBER]), int(t.user_attrs[ATTEMPT]))
            if key not in out or t.number < out[key].frozen.number:
                out[key] = _Attempt(t, *key)
        return out

    def _latest(self, started_only: bool = False) -> dict[int, _Attempt]:
        """Per slot, its highest attempt (with ``started_only``, the highest that ever ran)."""
        latest: dict[int, _Attempt] = {}
        for (number, attempt), a in self._attempts().items():
            if started_only and a.status == "waiting":
                continue
            if number not in latest or attempt > latest[number].attempt:
                latest[number] = a
        return latest

    def _record(self, number: int, a: _Attempt) -> TrialRecord:
        saved = a.attrs.get(RECORD)
        if saved is not None:
            rec = TrialRecord(**saved)
        else:
            params = self.search.decode(a.frozen.params)
            rec = TrialRecord(number, params, attempt=a.attempt, dir=trial_dir(number, a.attempt))
        if a.status in ("running", "interrupted"):
            rec.status = "running"
            rec.reason = self.search.study.user_attrs.get(f"{INTERRUPTED}.{a.frozen.number}")
        return rec

    # ---------------------------------------------------------------- changing the study

    def _check_fingerprint(self) -> None:
        study = self.search.study
        mine = json.loads(json.dumps(self.local.fingerprint))
        theirs = study.user_attrs.get(FINGERPRINT)
        if theirs is None:
            study.set_user_attr(FINGERPRINT, mine)
            theirs = study.user_attrs.get(FINGERPRINT, mine)
        diffs = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        if diffs:
            detail = "; ".join(f"{k}: study has {theirs.get(k)!r}, now {mine.get(k)!r}" for k in diffs)
            raise SweepStateError(
                f"study {self.name!r} in {self.where} is a different sweep ({detail}). Start every "
                "worker with the same config, overrides and options, or use another --study"
            )

    def _fill(self, retry_failed: bool) -> None:
        """Queue every slot that has no attempt yet, or whose last one was interrupted (or failed,
        with ``retry_failed``). Concurrent fills may queue a slot twice; claim() voids the copy."""
        grid = self.opts.space.grid() if self.opts.search == "grid" else None
        latest = self._latest()
        for number in range(1, self.total + 1):
            a = latest.get(number)
            if a is None:
                params = grid[number - 1] if grid is not None and number <= len(grid) else None
                self._queue(number, 1, params, [])
            elif a.status == "interrupted" or (retry_failed and a.status == "failed"):
                self._queue(number, a.attempt + 1, self._params_of(a, grid), a.dirs)

    def _params_of(self, a: _Attempt, grid: list[dict[str, Value]] | None) -> dict[str, Value] | None:
        """The params to run a slot with again: its grid point, or the values it was sampled with."""
        if grid is not None and a.number <= len(grid):
            return grid[a.number - 1]
        if all(d.key in a.frozen.params for d in self.opts.space.dims):
            return self.search.decode(a.frozen.params)
        return None  # never got its values: sample anew

    def _queue(self, number: int, attempt: int, params: dict[str, Value] | None, previous: list[str]) -> None:
        self.search.enqueue(params, {NUMBER: number, ATTEMPT: attempt, PREVIOUS: previous})

    def _reclaim(self) -> None:
        """End the running trials whose worker is gone, and queue their slots again."""
        now, ended = time.time(), False
        for a in self._attempts().values():
            if a.status != "running":
                continue
            owner = a.attrs.get(WORKER) or {}
            if owner.get("id") == self.worker.id:
                continue
            beat = a.attrs.get(HEARTBEAT)
            if not isinstance(beat, (int, float)):  # popped a moment ago, not yet marked
                started = a.frozen.datetime_start
                beat = started.timestamp() if started is not None else now
            silent = now - beat
            if self.worker.gone(owner):
                why = f"its worker (pid {owner.get('pid')} on this machine) has exited"
            elif silent > self.opts.stale_after_s:
                why = f"its worker {owner.get('id', '?')} sent no heartbeat for {silent:.0f}s"
            else:
                continue
            if self._end_interrupted(a.frozen.number, why):
                self.echo(f"[trial {a.number}/{self.total}] will run again: {why}")
                ended = True
        if ended:
            self._fill(retry_failed=False)

    def _end_interrupted(self, optuna_number: int, why: str) -> bool:
        """End a running trial as interrupted; False when it had already ended (someone else did).
        The storage accepts one ending: of several workers ending it at once, one gets True."""
        study = self.search.study
        study.set_user_attr(f"{INTERRUPTED}.{optuna_number}", why)
        try:
            with quiet_optuna():
                study.tell(optuna_number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):  # ValueError: it was seen finished already
            return False
        return True

    def _void(self, trial: optuna.Trial, why: str) -> None:
        trial.set_user_attr(VOID, why)
        self.search.void(trial)
