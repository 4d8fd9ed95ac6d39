"""The winning configuration as a YAML file ``lorakit train`` accepts as is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from lorakit.adapter_io.integrity import atomic_write_text
from lorakit.runconfig.yaml_io import apply_override, parse_override, read_config_yaml, validate_config
from lorakit.sweep.report import SweepReport
from lorakit.sweep.space import format_value
from lorakit.sweep.state import TrialRecord

BEST_CONFIG = "best_config.yaml"


def best_config_text(
    base_config: Path, overrides: Sequence[str], best: TrialRecord, metric: str, budget_steps: int | None
) -> str:
    """The base config with the sweep's fixed overrides and the best trial's values applied.

    The training schedule stays the user's own: trials may have run on a step budget, the
    chosen config is meant for the full run.
    """
    data, _ = read_config_yaml(base_config)  # paths made absolute: the file lands elsewhere
    for text in [*overrides, *(f"{k}={format_value(v)}" for k, v in best.params.items())]:
        apply_override(data, *parse_override(text))
    validate_config(data, source=f"best config of trial {best.number}")
    header = [
        f"# Best configuration of the sweep over {base_config} (trial {best.number}, dir {best.dir}):",
        f"#   {metric}={best.best_metric:.4f} at step {best.best_step}, "
        f"{best.trainable_params or 0:,} trainable parameters.",
        "#   " + ", ".join(f"{k}={format_value(v)}" for k, v in best.params.items()),
    ]
    if budget_steps is not None:
        header.append(
            f"# Trials ran with --budget-steps {budget_steps} (train.max_steps={budget_steps}); "
            "this file keeps your schedule."
        )
    return "\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False)


def write_best_config(
    report: SweepReport, out_dir: Path, base_config: Path, overrides: Sequence[str], budget_steps: int | None
) -> Path | None:
    """Write ``best_config.yaml`` when a trial completed; returns its path."""
    if report.best is None:
        return None
    path = out_dir / BEST_CONFIG
    atomic_write_text(
        path, best_config_text(base_config, overrides, report.best, report.metric, budget_steps)
    )
    return path
