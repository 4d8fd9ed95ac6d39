"""A sweep run by one process: trials in the folder's state file, Optuna in memory."""

from __future__ import annotations

from collections.abc import Iterator

from lorakit.errors import LorakitError
from lorakit.sweep.ledger import Claim
from lorakit.sweep.options import SweepOptions
from lorakit.sweep.search import Search
from lorakit.sweep.space import Value
from lorakit.sweep.state import STATE_FILE, SweepState, TrialRecord, open_state, trial_dir


class LocalLedger:
    """The state file is saved after every change; a rerun resumes from it."""

    def __init__(self, options: SweepOptions, report_only: bool = False) -> None:
        self.opts = options
        self.path = options.out_dir / STATE_FILE
        if report_only and not self.path.exists():
            raise LorakitError(f"no sweep to report in {options.out_dir} (no {STATE_FILE})")
        self.state: SweepState = open_state(options.out_dir, options.fingerprint())
        # A resumed sampler must not replay the draws of the first run: its seed moves with the history.
        seed = (options.seed + 7919 * len(self.state.trials)) % 2**32
        self.search = Search(options.space, options.search, options.direction, seed, options.pruner)
        self.search.replay(self.state.trials)
        self.total = options.total()
        self._pending = self._todo()
        if not report_only:
            self._save()

    def finished_before(self) -> int:
        return sum(not self._to_rerun(t) for t in self.state.trials)

    def claim(self) -> Claim | None:
        item = next(self._pending, None)
        if item is None:
            return None
        rec, params = item
        trial, params = self.search.ask(params)
        if rec is None:
            rec = TrialRecord(number=self.state.next_number(), params=params)
            self.state.trials.append(rec)
        else:
            rec.previous_dirs.append(rec.dir)
            rec.attempt += 1
            rec.status, rec.intermediate, rec.reason = "running", {}, None
        rec.dir = trial_dir(rec.number, rec.attempt)
        self._save()
        return Claim(record=rec, trial=trial)

    def report(self, claim: Claim, step: int, value: float) -> bool:
        return self.search.report(claim.trial, step, value)

    def beat(self, claims: list[Claim]) -> list[Claim]:
        return []  # nobody else runs this sweep

    def finish(self, claim: Claim) -> bool:
        rec = claim.record
        self.search.tell(claim.trial, rec.status, rec.best_metric)
        self._save()
        return True

    def interrupt(self, claims: list[Claim]) -> None:
        # Their records stay "running": the next invocation restarts them in fresh directories.
        self._save()

    def snapshot(self) -> SweepState:
        return self.state

    def unfinished(self) -> int:
        return sum(not t.finished for t in self.state.trials)

    def _save(self) -> None:
        self.opts.out_dir.mkdir(parents=True, exist_ok=True)
        self.state.save(self.path)

    def _todo(self) -> Iterator[tuple[TrialRecord | None, dict[str, Value] | None]]:
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
