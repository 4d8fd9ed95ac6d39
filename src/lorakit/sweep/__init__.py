"""Hyperparameter sweeps over ``lorakit train``: search space, trial runner, resumable state, report."""

from lorakit.sweep.options import SweepOptions
from lorakit.sweep.runner import run_sweep
from lorakit.sweep.search import PrunerSettings
from lorakit.sweep.space import Choice, GridSpecError, Range, SearchSpace, parse_grid, parse_space
from lorakit.sweep.state import SweepState, TrialRecord

__all__ = [
    "Choice",
    "GridSpecError",
    "PrunerSettings",
    "Range",
    "SearchSpace",
    "SweepOptions",
    "SweepState",
    "TrialRecord",
    "parse_grid",
    "parse_space",
    "run_sweep",
]
