"""The sweep loop: start trials, watch their validation metrics, prune, record, resume."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from lorakit.errors import LorakitError
from lorakit.sweep.metrics import Direction, MetricsTail, best_point, eval_points, read_summary
from lorakit.sweep.process import TrialProcess, default_train_command, launch, log_tail
from lorakit.sweep.search import PrunerSettings, Search
from lorakit.sweep.space import SearchKind, SearchSpace, Value, format_value
from lorakit.sweep.state import STATE_FILE, SweepState, TrialRecord, open_state

TRIALS_DIR = "trials"
_OK_TRAIN_STATUS = ("completed", "stopped_early")


@dataclass(frozen=True)
class SweepOptions:
    """One sweep: the base config, what varies, how to search, where results go."""

    config: Path
    """The base run config (YAML) every trial starts from."""
    space: SearchSpace
    """The swept keys and their values."""
    out_dir: Path
    """Sweep directory: state file, trials/, report, plots."""
    metric: str
    """Validation metric the sweep optimises (the trainer's metric_for_best)."""
    direction: Direction
    """Whether a larger ``metric`` is better."""
    overrides: tuple[str, ...] = ()
    """Fixed ``key=value`` overrides applied to every trial."""
    search: SearchKind = "grid"
    """grid: every combination; random / tpe: ``trials`` samples."""
    trials: int | None = None
    """Number of trials (random/tpe), or a cap on the grid size."""
    budget_steps: int | None = None
    """Optimizer steps per trial (sets train.max_steps)."""
    parallel: int = 1
    """Trials running at once."""
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    """Median pruning of trials that fall behind."""
    seed: int = 0
    """Seed of the random / TPE sampler (each trial keeps the config's training seed)."""
    train_command: tuple[str, ...] = field(default_factory=default_train_command)
    """The trainer: called as ``COMMAND CONFIG overrides... output_dir=DIR``."""
    cpu_threads: int | None = None
    """Threads per trial process when several run at once (None: the trainer's default)."""
    poll_s: float = 0.5
    """How often running trials are checked."""
    retry_failed: bool = False
    """Run failed trials of an earlier invocation again (after fixing what made them fail)."""

    def fingerprint(self) -> dict[str, object]:
        """What must match for a rerun to resume this sweep (the grid may grow; trials may rise)."""
        return {
            "config_sha256": hashlib.sha256(self.config.read_bytes()).hexdigest(),
            "overrides": list(self.overrides),
            "budget_steps": self.budget_steps,
            "search": self.search,
            "metric": self.metric,
            "direction": self.direction,
            # Sampled sweeps replay their history into Optuna, which needs the same space.
            "space": None if self.search == "grid" else self.space.describe(),
            "seed": None if self.search == "grid" else self.seed,
        }


@dataclass
class _Live:
    record: TrialRecord
    trial: optuna.Trial
    proc: TrialProcess
    tail: MetricsTail
    pruned: bool = False


class SweepRunner:
    """Runs the trials of one sweep; the state file is saved after every change."""

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
        self.state_path = options.out_dir / STATE_FILE
        self.state: SweepState = open_state(options.out_dir, options.fingerprint())
        # A resumed sampler must not replay the draws of the first run: its seed moves with the history.
        seed = (options.seed + 7919 * len(self.state.trials)) % 2**32
        self.search = Search(options.space, options.search, options.direction, seed, options.pruner)
        self.search.replay(self.state.trials)
        self.total = self._total()

    def run(self) -> SweepState:
        """Run every trial that has not finished yet; returns the final state."""
        self.opts.out_dir.mkdir(parents=True, exist_ok=True)
        self.state.save(self.state_path)
        done = sum(not self._to_rerun(t) for t in self.state.trials)
        if done:
            self.echo(f"resuming: {done} finished trial(s) skipped")
        pending = self._pending()
        running: list[_Live] = []
        try:
            while True:
                while len(running) < self.opts.parallel and (item := next(pending, None)) is not None:
                    running.append(self._start(*item))
                if not running:
                    break
                time.sleep(self.opts.poll_s)
                for live in list(running):
                    if self._poll(live):
                        running.remove(live)
        except BaseException:
            # Ctrl-C or a crash of the sweep itself: stop the children; their records stay
            # "running", so the next invocation restarts them in fresh directories.
            for live in running:
                live.proc.stop()
            self.state.save(self.state_path)
            raise
        return self.state

    def _total(self) -> int:
        if self.opts.search == "grid":
            n = len(self.opts.space.grid())
            return min(n, self.opts.trials) if self.opts.trials else n
        return self.opts.trials or 10

    def _pending(self) -> Iterator[tuple[TrialRecord | None, dict[str, Value] | None]]:
        """(record to restart or None, params or None to sample), in run order."""
        if self.opts.search == "grid":
            for params in self.opts.space.grid()[: self.total]:
                rec = self.state.find(params)
                if rec is None or self._to_rerun(rec):
                    yield rec, params
            return
        for rec in [t for t in self.state.trials if self._to_rerun(t)]:
            yield rec, rec.params
        while len(self.state.trials) < self.total:
            yield None, None

    def _to_rerun(self, rec: TrialRecord) -> bool:
        return not rec.finished or (self.opts.retry_failed and rec.status == "failed")

    def _start(self, rec: TrialRecord | None, params: dict[str, Value] | None) -> _Live:
        trial, params = self.search.ask(params)
        if rec is None:
            rec = TrialRecord(number=self.state.next_number(), params=params)
            self.state.trials.append(rec)
        else:
            rec.previous_dirs.append(rec.dir)
            rec.attempt += 1
            rec.status, rec.intermediate, rec.reason = "running", {}, None
        rec.dir = f"{TRIALS_DIR}/trial-{rec.number:03d}" + (
            f"-attempt{rec.attempt}" if rec.attempt > 1 else ""
        )
        out = self.opts.out_dir / rec.dir
        if out.exists():
            shutil.rmtree(out)  # never continue inside a half-written directory
        self.state.save(self.state_path)
        overrides = [*self.opts.overrides, *(f"{k}={format_value(v)}" for k, v in params.items())]
        if self.opts.budget_steps is not None:
            overrides.append(f"train.max_steps={self.opts.budget_steps}")
        proc = launch(
            self.opts.train_command, self.opts.config, overrides, out.resolve(), self.opts.cpu_threads
        )
        self.echo(f"[trial {rec.number}/{self.total}] start  {_params_text(params)}" + _attempt_text(rec))
        return _Live(record=rec, trial=trial, proc=proc, tail=MetricsTail(out / "metrics.jsonl"))

    def _poll(self, live: _Live) -> bool:
        """Feed new validation values to the pruner; True once the trial has ended."""
        rec = live.record
        for step, value in eval_points(live.tail.poll(), self.opts.metric):
            if str(step) in rec.intermediate:
                continue
            rec.intermediate[str(step)] = value
            if live.pruned or not self.search.report(live.trial, step, value):
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
        self.search.tell(live.trial, rec.status, rec.best_metric)
        self.state.save(self.state_path)
        self.echo(f"[trial {rec.number}/{self.total}] {_outcome_text(rec, self.opts.metric)}")


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
