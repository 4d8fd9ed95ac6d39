"""Plots from metrics.jsonl: loss always, and the task's metrics even when the best is chosen by loss."""

from __future__ import annotations

import json
from pathlib import Path

from lorakit.training.plots import write_plots


def _write_metrics(run: Path) -> None:
    rows = [
        {"step": 0, "split": "eval", "loss": 1.4, "accuracy": 0.3, "macro_f1": 0.2},
        {"step": 5, "split": "train", "loss": 1.2, "lr": 0.01},
        {"step": 10, "split": "eval", "loss": 0.7, "accuracy": 0.9, "macro_f1": 0.88},
    ]
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_best_by_loss_still_plots_the_task_metrics(tmp_path: Path) -> None:
    _write_metrics(tmp_path)
    written = write_plots(tmp_path, "loss")
    assert sorted(p.name for p in written) == ["accuracy.png", "loss.png", "macro_f1.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


def test_main_metric_alone_when_it_is_not_loss(tmp_path: Path) -> None:
    _write_metrics(tmp_path)
    written = write_plots(tmp_path, "accuracy")
    assert sorted(p.name for p in written) == ["accuracy.png", "loss.png"]


def test_plotting_leaves_the_matplotlib_backend_and_pyplot_alone(tmp_path: Path) -> None:
    import sys

    import matplotlib

    _write_metrics(tmp_path)
    backend = dict.__getitem__(matplotlib.rcParams, "backend")  # unresolved: no auto-selection
    had_pyplot = "matplotlib.pyplot" in sys.modules
    written = write_plots(tmp_path, "accuracy")
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
