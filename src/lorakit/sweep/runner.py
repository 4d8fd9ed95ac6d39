"""The sweep loop: start trials, watch their validation metrics, prune, record, resume.

Which trials exist and which one runs next is the ledger's business (the folder's state file,
or a study in shared storage that several worker processes draw from); this loop runs them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorakit.errors import LorakitError
from lorakit.sweep.ledger import Claim, Ledger
from lorakit.sweep.local_ledger import LocalLedger
from lorakit.sweep.metrics import MetricsTail, best_point, eval_points, read_summary
from lorakit.sweep.options import SweepOptions
from lorakit.sweep.process import TrialProcess, launch, log_tail
from lorakit.sweep.shared_ledger import SharedLedger
from lorakit.sweep.space import Value, format_value
from lorakit.sweep.state import SweepState, TrialRecord

_OK_TRAIN_STATUS = ("completed", "stopped_early")


@dataclass
class _Live:
    claim: Claim
    proc: TrialProcess
    tail: MetricsTail
    pruned: bool = False

    @property
    def record(self) -> TrialRecord:
        return self.claim.record


class SweepRunner:
    """Runs this process's share of the trials of one sweep; every change is recorded at once."""

    def __init__(self, options: SweepOptions, echo: Callable[[str], None] = print) -> None:
        if options.parallel < 1:
            raise LorakitError(f"--parallel must be >= 1, got {options.parallel}")
        if options.budget_steps is not None and options.budget_steps < 1:
            raise LorakitError(f"--budget-steps must be >= 1, got {options.budget_steps}")
        if options.trials is not None and options.trials < 1:
            raise LorakitError(f"--trials must be >= 1, got {options.trials}")
        if options.budget_steps is not None and "train.max_steps" in options.space.keys:
            raise LorakitError(
                "--budget-steps sets train.max_steps, which --grid also sweeps: use one of them"
            )
        self.opts = options
        self.echo = echo
        self.ledger: Ledger = open_ledger(options, echo)

    @property
    def total(self) -> int:
        return self.ledger.total

    def run(self) -> SweepState:
        """Run every trial that has not finished yet (those this process gets); returns the state."""
        self.opts.out_dir.mkdir(parents=True, exist_ok=True)
        done = self.ledger.finished_before()
        if done:
            self.echo(f"resuming: {done} finished trial(s) skipped")
        running: list[_Live] = []
        try:
            while True:
                while len(running) < self.opts.parallel and (claim := self.ledger.claim()) is not None:
                    running.append(self._start(claim))
                    self._say(
                        claim.record,
                        f"start  {_params_text(claim.record.params)}{_attempt_text(claim.record)}",
                    )
                if not running:
                    break
                time.sleep(self.opts.poll_s)
                for lost in self.ledger.beat([live.claim for live in running]):
                    self._stop_lost(next(live for live in running if live.claim is lost))
                for live in list(running):
                    if self._poll(live):
                        running.remove(live)
        except BaseException:
            # Ctrl-C or a crash of the sweep itself: stop the children and leave their trials to
            # be run again, in fresh directories, by the next invocation (or another worker).
            for live in running:
                live.proc.stop()
            self.ledger.interrupt([live.claim for live in running])
            raise
        return self.ledger.snapshot()

    def _start(self, claim: Claim) -> _Live:
        rec = claim.record
        out = self.opts.out_dir / rec.dir
        if out.exists():
            shutil.rmtree(out)  # never continue inside a half-written directory
        overrides = [*self.opts.overrides, *(f"{k}={format_value(v)}" for k, v in rec.params.items())]
        if self.opts.budget_steps is not None:
            overrides.append(f"train.max_steps={self.opts.budget_steps}")
        proc = launch(
            self.opts.train_command,
            self.opts.config,
            overrides,
            out.resolve(),
            self.opts.cpu_threads,
            self.opts.orphan_guard,
        )
        return _Live(claim=claim, proc=proc, tail=MetricsTail(out / "metrics.jsonl"))

    def _poll(self, live: _Live) -> bool:
        """Feed new validation values to the pruner; True once the trial has ended."""
        rec = live.record
        for step, value in eval_points(live.tail.poll(), self.opts.metric):
            if str(step) in rec.intermediate:
                continue
            rec.intermediate[str(step)] = value
            if live.pruned or not self.ledger.report(live.claim, step, value):
                continue
            live.pruned = True
            rec.reason = (
                f"pruned at step {step}: {self.opts.metric}={value:.4g} is worse than the median "
                "of earlier trials at that step"
            )
            live.proc.stop()
        if live.proc.returncode is None:
            return False
        live.proc.close()
        self._finish(live)
        return True

    def _stop_lost(self, live: _Live) -> None:
        """Another worker has taken this trial over (we looked dead to it): stop our copy."""
        live.pruned = True
        live.proc.stop()

    def _finish(self, live: _Live) -> None:
        rec, out = live.record, self.opts.out_dir / live.record.dir
        live.tail.poll()
        points = eval_points(live.tail.records, self.opts.metric)
        summary = read_summary(out / "summary.json") or {}
        rec.train_status = summary.get("status")
        rec.trainable_params = summary.get("trainable_params")
        rec.trainable_percent = summary.get("trainable_percent")
        rec.final_step = summary.get("final_step")
        rec.process_time_s = round(live.proc.elapsed(), 2)
        rec.wall_time_s = round(float(summary.get("wall_time_s") or rec.process_time_s), 2)
        best = best_point(points, self.opts.direction)
        if live.pruned:
            rec.status = "pruned"
            rec.best_step, rec.best_metric = best if best else (None, None)
        elif rec.train_status in _OK_TRAIN_STATUS and _finite(summary.get("best_metric")):
            rec.status, rec.reason = "completed", None
            rec.best_metric, rec.best_step = float(summary["best_metric"]), summary.get("best_step")
        elif rec.train_status in _OK_TRAIN_STATUS and best is not None:
            rec.status, rec.reason = "completed", None
            rec.best_step, rec.best_metric = best
        else:
            rec.status = "failed"
            rec.best_step, rec.best_metric = best if best else (None, None)
            rec.reason = _failure_reason(summary, live.proc.returncode, out)
        if not self.ledger.finish(live.claim):
            self._say(rec, "dropped: another worker took this trial over (it saw no heartbeat from this one)")
            return
        self._say(rec, _outcome_text(rec, self.opts.metric))

    def _say(self, rec: TrialRecord, text: str) -> None:
        self.echo(f"[trial {rec.number}/{self.total}] {text}")


def open_ledger(options: SweepOptions, echo: Callable[[str], None], report_only: bool = False) -> Ledger:
    """The ledger of ``options``: shared when it names a storage. ``report_only`` opens an existing
    sweep for reading: no trial is queued, taken over or claimed."""
    if options.storage is not None:
        return SharedLedger(options, echo, report_only)
    return LocalLedger(options, report_only)


def run_sweep(options: SweepOptions, echo: Callable[[str], None] = print) -> SweepState:
    """Run (or resume) a sweep and return its state; see :class:`SweepOptions`."""
    return SweepRunner(options, echo).run()


def _failure_reason(summary: dict[str, object], returncode: int | None, out: Path) -> str:
    if summary.get("error"):
        return str(summary["error"])
    if summary.get("status") in _OK_TRAIN_STATUS:
        return "no finite validation metric was reported"
    tail = log_tail(out)
    return f"trainer exited with code {returncode}" + (f": {tail}" if tail else "")


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def _params_text(params: dict[str, Value]) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in params.items())


def _attempt_text(rec: TrialRecord) -> str:
    return f" (attempt {rec.attempt})" if rec.attempt > 1 else ""


def _outcome_text(rec: TrialRecord, metric: str) -> str:
    head = f"{rec.status:<9} {_params_text(rec.params)}"
    value = f" {metric}={rec.best_metric:.4f}" if rec.best_metric is not None else ""
    reason = f" -- {rec.reason}" if rec.reason and rec.status != "completed" else ""
    return f"{head}{value} ({rec.wall_time_s:.1f}s){reason}"
