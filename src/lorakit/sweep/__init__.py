"""Hyperparameter sweeps over ``lorakit train``: search space, trial runner, resumable state, report.

The names below are imported on first use, so ``lorakit.sweep.space`` (the ``--grid`` syntax)
is importable without optuna, the ``sweep`` extra that running a sweep needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SweepOptions": "options",
    "run_sweep": "runner",
    "PrunerSettings": "search",
    "Choice": "space",
    "GridSpecError": "space",
    "Range": "space",
    "SearchSpace": "space",
    "parse_grid": "space",
    "parse_space": "space",
    "SweepState": "state",
    "TrialRecord": "state",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"lorakit.sweep.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
