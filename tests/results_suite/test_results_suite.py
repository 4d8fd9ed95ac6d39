"""`make results`: every method of a task trains on the same data, steps, batch and order, and
every job config validates; the report renders a table per task from result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.suite import plan, report

from lorakit.training.config_io import validate_config


@pytest.mark.parametrize("budget", ["tiny", "full"])
def test_methods_share_data_steps_batch(budget: str, tmp_path: Path) -> None:
    for task in plan.tasks(budget):
        configs = {m: plan.job_config(task, m, 0, 1e-3, tmp_path / m) for m in task.methods}
        for method, cfg in configs.items():
            validate_config(cfg, source=f"{task.key}/{method}")
            first = configs[task.methods[0]]
            assert cfg["data"] == first["data"] and cfg.get("eval") == first.get("eval")
            same = {k: v for k, v in cfg["train"].items() if k not in ("keep_best", "save_every")}
            ref = {k: v for k, v in first["train"].items() if k not in ("keep_best", "save_every")}
            assert same == ref, (task.key, method)
        tune = plan.tuning_config(task, 1e-4, tmp_path / "tune")
        assert "validation" not in tune["data"] and tune["data"]["validation_split"] == 0.05


def test_report_table_from_results(tmp_path: Path) -> None:
    task = next(t for t in plan.tasks("tiny") if t.key == "sst2")
    for method, accs in (("lorakit-qv", (0.8, 0.9)), ("full", (0.85, 0.87))):
        for seed, acc in enumerate(accs):
            folder = tmp_path / "sst2" / f"{method}-s{seed}"
            folder.mkdir(parents=True)
            cfg = plan.job_config(task, method, seed, 1e-3, folder / "run")
            (folder / "spec.json").write_text(json.dumps({"config": cfg}))
            summary = {
                "final_metrics": {"accuracy": acc, "macro_f1": acc},
                "trainable_params": 1000 if method != "full" else 10**7,
                "wall_time_s": 60.0,
                "peak_memory_mb": 1024.0,
            }
            result = {"job": folder.name, "method": method, "result": str(folder / "result.json")}
            (folder / "result.json").write_text(json.dumps({**result, "summary": summary}))
    path = report.write_report(tmp_path, [task], "tiny")
    text = path.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| lorakit LoRA q+v"))
    assert "(2 seeds)" in row and "85.00 ± 7.07" in row and "1,000" in row and "1.00 GB" in row
    assert "87.00" not in row and (tmp_path / "plots" / "metric_vs_params.png").is_file()
