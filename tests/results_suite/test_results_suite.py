"""`make results`: every method of a task trains on the same data, steps, batch and order, and
every job config validates; the report renders a table per task from result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.suite import plan, report

from lorakit.runconfig.yaml_io import validate_config


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
            result["loadavg_end"] = ["1.0", f"{3 + seed}.2", "1.0"]
            (folder / "result.json").write_text(json.dumps({**result, "summary": summary}))
    path = report.write_report(tmp_path, [task], "tiny")
    text = path.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| lorakit LoRA q+v"))
    assert "(2 seeds)" in row and "85.00 ± 7.07" in row and "1,000" in row and "| 3-4 | 1.00 GB" in row
    assert "87.00" not in row and (tmp_path / "plots" / "metric_vs_params.png").is_file()


def _finished_job(out: Path, task: plan.Task, name: str, method: str, config: dict, score: float) -> None:
    folder = out / task.key / name
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"method": method, "config": config}))
    summary = {"final_metrics": {task.metric: score}}
    (folder / "result.json").write_text(json.dumps({"method": method, "summary": summary}))


def test_tuned_rate_is_the_best_of_the_grid_and_peft_shares_it(tmp_path: Path) -> None:
    from bench.suite import run

    task = next(t for t in plan.tasks("tiny") if t.key == "conll2003")
    grid = task.lr_grids["lorakit-qv"]
    scores = {lr: 0.5 if i == 1 else 0.3 for i, lr in enumerate(grid)}
    for lr, score in scores.items():
        name = f"tune-lorakit-qv-lr{lr:g}"
        cfg = plan.tuning_config(task, lr, tmp_path / task.key / name / "run", "lorakit-qv")
        _finished_job(tmp_path, task, name, "lorakit-qv", cfg, score)
    tuned: dict = {}
    rate = run.method_rate(tmp_path, task, "peft-qv", tuned, "tiny", None)
    assert rate == grid[1] == run.method_rate(tmp_path, task, "lorakit-qv", tuned, "tiny", None)
    saved = json.loads((tmp_path / task.key / "lr_lorakit-qv.json").read_text())
    assert saved["best"] == grid[1] and len(saved["scores"]) == len(grid)
    sst2 = next(t for t in plan.tasks("tiny") if t.key == "sst2")
    assert run.method_rate(tmp_path, sst2, "lorakit-all", tuned, "tiny", None) == sst2.lora_lr


def test_a_finished_job_whose_config_changed_is_set_aside_and_rerun(tmp_path: Path) -> None:
    from bench.suite import run

    task = next(t for t in plan.tasks("tiny") if t.key == "sst2")
    old = plan.job_config(task, "lorakit-qv", 0, 5e-3, tmp_path / "sst2" / "lorakit-qv-s0" / "run")
    _finished_job(tmp_path, task, "lorakit-qv-s0", "lorakit-qv", old, 0.9)
    folder = tmp_path / "sst2" / "lorakit-qv-s0"
    assert not run._config_changed(folder, old)
    assert not run._config_changed(folder, {**old, "output_dir": "elsewhere"})
    new = plan.job_config(task, "lorakit-qv", 0, 1e-3, folder / "run")
    assert run._config_changed(folder, new)


def test_rank_variants_differ_from_their_method_only_in_rank_and_alpha() -> None:
    task = next(t for t in plan.tasks("full") if t.key == "conll2003")
    base, r16 = plan.lora_section(task, "lorakit-all"), plan.lora_section(task, "lorakit-all-r16")
    assert (base["r"], base["alpha"], r16["r"], r16["alpha"]) == (8, 16, 16, 32)
    assert {**r16, "r": 8, "alpha": 16} == base
    assert "lorakit-all-r16" in report.METHOD_NAMES and "lorakit-all-r16" in task.lr_grids
