"""The sweep report: table, sweep.csv / sweep.json, plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lorakit.sweep import run_sweep
from lorakit.sweep.plots import write_plots
from lorakit.sweep.report import build_report, format_table, write_report
from lorakit.sweep.state import SweepState, TrialRecord

from .test_runner import options

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(n: int, r: int, metric: float | None, status: str = "completed") -> TrialRecord:
    return TrialRecord(
        number=n,
        params={"lora.r": r},
        status=status,
        best_metric=metric,
        trainable_params=1000 * r,
        wall_time_s=1.0,
    )


def test_best_and_cheapest_within_tolerance() -> None:
    state = SweepState(
        fingerprint={},
        trials=[
            _record(0, 16, 0.905),
            _record(1, 4, 0.900),
            _record(2, 1, 0.80),
            _record(3, 2, None, "failed"),
        ],
    )
    report = build_report(state, ["lora.r"], "accuracy", "maximize")
    assert report.best.number == 0
    assert report.efficient.number == 1
    assert [t.number for t in report.ranked()] == [0, 1, 2]
    low = build_report(state, ["lora.r"], "loss", "minimize")
    assert low.best.number == 2


def test_report_files_and_plots_from_a_sweep(tmp_path: Path) -> None:
    opts = options(tmp_path, ["lora.r=2,8", "train.lr=1e-3,2.0"])
    state = run_sweep(opts, echo=lambda s: None)
    report = build_report(state, opts.space.keys, "accuracy", "maximize")
    assert report.best is not None and report.best.params == {"lora.r": 8, "train.lr": 1e-3}

    table = format_table(report)
    header = table.splitlines()[0].split()
    assert header[:5] == ["trial", "lora.r", "train.lr", "trainable", "best"]
    assert "*3" in table and "failed: loss is NaN at step 3" in table
    assert "2 completed, 2 failed, 0 pruned" in table

    write_report(report, opts.out_dir)
    with (opts.out_dir / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["completed", "failed", "completed", "failed"]
    assert rows[2]["lora.r"] == "8" and rows[2]["trainable_params"] == "8000"
    assert float(rows[2]["best_accuracy"]) == report.best.best_metric
    data = json.loads((opts.out_dir / "sweep.json").read_text())
    assert data["best_trial"] == 3 and data["counts"]["failed"] == 2
    assert data["trials"][1]["reason"] == "loss is NaN at step 3"
    assert data["trials"][0]["params"] == {"lora.r": 2, "train.lr": 0.001}

    plots = write_plots(report, opts.out_dir)
    names = sorted(p.name for p in plots)
    assert names == ["learning_curves.png", "metric_vs_rank.png", "metric_vs_trainable.png"]
    for p in plots:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5000
