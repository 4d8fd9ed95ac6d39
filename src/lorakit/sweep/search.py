"""Optuna behind a small interface: which params to try next, and whether to prune a trial.

Without shared storage the study lives in memory and the sweep state file is the durable record:
on resume every finished trial is replayed into a fresh study, so TPE and the median pruner see
the full history. With shared storage the study itself is the record, shared by every worker.

Optuna's log level is raised only while its calls run, then restored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from lorakit.sweep.metrics import Direction
from lorakit.sweep.space import Choice, SearchKind, SearchSpace, Value
from lorakit.sweep.state import TrialRecord

_STATES = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}


@dataclass(frozen=True)
class PrunerSettings:
    """Median pruning: stop a trial whose metric is worse than the median of earlier trials."""

    enabled: bool = True
    """False: every trial runs its full budget."""
    startup_trials: int = 4
    """Finished trials needed before anything is pruned."""
    warmup_steps: int = 0
    """Steps of a trial before it may be pruned."""


class Search:
    """The Optuna study of one sweep. Params cross this boundary as plain config values."""

    def __init__(
        self,
        space: SearchSpace,
        kind: SearchKind,
        direction: Direction,
        seed: int,
        pruner: PrunerSettings,
        storage: optuna.storages.BaseStorage | None = None,
        study_name: str | None = None,
    ) -> None:
        """In memory, or (``storage``) the named study there, created by whichever worker comes first."""
        self.space = space
        self.dists: dict[str, BaseDistribution] = {d.key: _distribution(d) for d in space.dims}
        with quiet_optuna():
            self.study = optuna.create_study(
                storage=storage,
                study_name=study_name,
                load_if_exists=storage is not None,
                direction=direction,
                sampler=_sampler(kind, seed, shared=storage is not None),
                pruner=_pruner(pruner),
            )

    def replay(self, records: Iterable[TrialRecord]) -> None:
        """Add finished trials from the state file to the study."""
        for rec in records:
            if not rec.finished:
                continue
            state = _STATES[rec.status]
            value = rec.best_metric if state == TrialState.COMPLETE else None
            if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
                state, value = TrialState.FAIL, None  # finished but never evaluated: no information
            trial = optuna.trial.create_trial(
                params=self._encode(rec.params),
                distributions=self.dists,
                value=value,
                state=state,
                intermediate_values={int(s): v for s, v in rec.intermediate.items()},
            )
            with quiet_optuna():
                self.study.add_trial(trial)

    def ask(self, params: dict[str, Value] | None = None) -> tuple[optuna.Trial, dict[str, Value]]:
        """A new live trial: with the given params (grid point, restarted trial) or sampled ones."""
        if params is not None:
            self.enqueue(params, {})
        return self.pop()

    def enqueue(self, params: dict[str, Value] | None, attrs: dict[str, Any]) -> None:
        """Queue a trial with these params (None: sampled when it is popped) and user attributes."""
        with quiet_optuna():
            self.study.enqueue_trial(self._encode(params) if params is not None else {}, user_attrs=attrs)

    def pop(self) -> tuple[optuna.Trial, dict[str, Value]]:
        """The first queued trial, now running (a freshly sampled one when the queue is empty)."""
        with quiet_optuna():
            trial = self.study.ask(fixed_distributions=self.dists)
        return trial, self._decode(trial.params)

    def decode(self, params: dict[str, Any]) -> dict[str, Value]:
        """Config values of a trial's Optuna params."""
        return self._decode(params)

    def report(self, trial: optuna.Trial, step: int, value: float) -> bool:
        """Record an intermediate validation value (once per step); True when the trial should be pruned."""
        trial.report(value, step)
        return trial.should_prune()

    def tell(self, trial: optuna.Trial, status: str, value: float | None) -> None:
        state = _STATES[status]
        if state == TrialState.COMPLETE and (value is None or not math.isfinite(value)):
            state, value = TrialState.FAIL, None
        with quiet_optuna():
            self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)

    def void(self, trial: optuna.Trial) -> None:
        """End a trial that will never run (a duplicate claim) as failed, so no sampler learns from it."""
        with quiet_optuna():
            self.study.tell(trial, None, state=TrialState.FAIL)

    def _encode(self, params: dict[str, Value]) -> dict[str, Any]:
        return {
            k: json.dumps(v) if isinstance(self.dists[k], CategoricalDistribution) else v
            for k, v in params.items()
        }

    def _decode(self, params: dict[str, Any]) -> dict[str, Value]:
        out: dict[str, Value] = {}
        for d in self.space.dims:
            raw = params[d.key]
            if isinstance(d, Choice):
                out[d.key] = json.loads(raw)
            else:
                out[d.key] = int(raw) if d.integer else float(raw)
        return out


def _distribution(dim: Any) -> BaseDistribution:
    if isinstance(dim, Choice):
        # Choices may be lists (target sets), which Optuna cannot hold: it sees their JSON text.
        return CategoricalDistribution([json.dumps(v) for v in dim.values])
    if dim.integer:
        return IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return FloatDistribution(dim.low, dim.high, log=dim.log)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's per-trial INFO lines off while the block runs; its previous level restored."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _sampler(kind: SearchKind, seed: int, shared: bool) -> optuna.samplers.BaseSampler:
    if kind == "tpe":
        # Workers sharing a study treat each other's running trials as bad (constant liar), so
        # they do not all sample the same promising point.
        with quiet_optuna():
            return optuna.samplers.TPESampler(seed=seed, constant_liar=shared)
    # Grid points are enqueued explicitly; the sampler only fills params that were not given.
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(settings: PrunerSettings) -> optuna.pruners.BasePruner:
    if not settings.enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_steps
    )
