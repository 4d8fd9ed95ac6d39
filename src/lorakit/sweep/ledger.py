"""Which trials a sweep has, which one this process runs next, and how each ended.

Two implementations: ``LocalLedger`` keeps the trials in the sweep folder's state file (one
process runs the sweep); ``SharedLedger`` keeps them in an Optuna study in shared storage, so
several processes on several machines run disjoint trials of one sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import optuna

from lorakit.sweep.state import SweepState, TrialRecord


@dataclass
class Claim:
    """A trial this process has taken on: its record and its live Optuna trial."""

    record: TrialRecord
    trial: optuna.Trial


class Ledger(Protocol):
    """The trials of one sweep, as seen by one process running some of them."""

    total: int
    """How many trials the sweep has (grid size or --trials)."""

    def finished_before(self) -> int:
        """Trials that had finished before this process started."""
        ...

    def claim(self) -> Claim | None:
        """The next trial for this process (its record saved as running), or None: nothing left."""
        ...

    def report(self, claim: Claim, step: int, value: float) -> bool:
        """Record an intermediate validation value; True when the trial should be pruned."""
        ...

    def beat(self, claims: list[Claim]) -> list[Claim]:
        """Say these trials are alive; returns those another worker has taken over meanwhile."""
        ...

    def finish(self, claim: Claim) -> bool:
        """Record the trial's outcome (in its record); False if another worker took it over."""
        ...

    def interrupt(self, claims: list[Claim]) -> None:
        """This process stops early: leave these trials to be run again, in fresh directories."""
        ...

    def snapshot(self) -> SweepState:
        """All trials of the sweep, for the report."""
        ...

    def unfinished(self) -> int:
        """Trials of the sweep still waiting or running (in other processes)."""
        ...
