"""``SweepOptions``: everything one sweep invocation needs, validated by the runner."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.sweep.metrics import Direction
from lorakit.sweep.orphans import OrphanGuard
from lorakit.sweep.process import default_train_command
from lorakit.sweep.search import PrunerSettings
from lorakit.sweep.space import SearchKind, SearchSpace

DEFAULT_SAMPLED_TRIALS = 10


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
    """Trials running at once (in this process)."""
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
    storage: str | None = None
    """Shared Optuna storage (a ``.journal`` file or a database URL): several processes, on
    several machines, then run disjoint trials of one sweep. None: the state file alone."""
    study_name: str | None = None
    """Name of the study in ``storage`` (None: the name of ``out_dir``)."""
    heartbeat_s: float = 30.0
    """With ``storage``: how often a worker marks its running trials as alive."""
    stale_after_s: float = 300.0
    """With ``storage``: a running trial silent this long is taken to have lost its worker and is
    run again (at once when its worker was on this machine and is gone)."""
    orphan_guard: OrphanGuard | None = None
    """How trials die with the sweep process (None: the best way for this platform)."""

    @property
    def study(self) -> str:
        """The shared study's name."""
        return self.study_name or self.out_dir.resolve().name

    def total(self) -> int:
        """Trials in the sweep: the grid (capped by ``trials``) or ``trials`` samples."""
        if self.search == "grid":
            n = len(self.space.grid())
            return min(n, self.trials) if self.trials else n
        return self.trials or DEFAULT_SAMPLED_TRIALS

    def fingerprint(self) -> dict[str, object]:
        """What must match for a rerun to resume this sweep (the grid may grow; trials may rise)."""
        return {
            "config_sha256": hashlib.sha256(self.config.read_bytes()).hexdigest(),
            "overrides": list(self.overrides),
            "budget_steps": self.budget_steps,
            "search": self.search,
            "metric": self.metric,
            "direction": self.direction,
            # Sampled sweeps replay their history into Optuna, which needs the same space; a
            # shared grid numbers its trials by grid position, which must not move.
            "space": None if self.search == "grid" and self.storage is None else self.space.describe(),
            "seed": None if self.search == "grid" else self.seed,
        }
