"""Finding run and sweep folders, run status, config diffs and sweep tables (no training)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml

from lorakit.ui.configs import MISSING, config_diff, flatten
from lorakit.ui.runs import RunIndex, discover
from lorakit.ui.sweeps import plot_names, read_sweep


def make_run(
    folder: Path, summary: dict | None = None, metrics: list[dict] | None = None, **config: object
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"task": "classification", "model": "m", **config}))
    if metrics is not None:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_discover_finds_runs_and_sweeps_and_nothing_else(tmp_path: Path) -> None:
    make_run(tmp_path / "a")
    make_run(tmp_path / "group" / "b")
    make_run(tmp_path / "a" / "checkpoints" / "step-2")  # inside a run: not a run
    (tmp_path / "sw").mkdir()
    (tmp_path / "sw" / "sweep_state.json").write_text("{}")
    make_run(tmp_path / "sw" / "trials" / "trial-001")
    make_run(tmp_path / ".hidden" / "c")
    outside = make_run(tmp_path.parent / f"{tmp_path.name}-outside" / "d")
    (tmp_path / "link").symlink_to(outside.parent, target_is_directory=True)
    found = discover(tmp_path)
    assert sorted(found.runs) == ["a", "group/b", "sw/trials/trial-001"]
    assert list(found.sweeps) == ["sw"]
    assert found.sweep_of == {"sw/trials/trial-001": "sw"}


def test_the_runs_folder_itself_can_be_a_run(tmp_path: Path) -> None:
    make_run(tmp_path)
    assert list(discover(tmp_path).runs) == ["."]


def test_status_from_summary_and_file_times(tmp_path: Path) -> None:
    index = RunIndex(tmp_path, stale_after_s=60)
    done = make_run(tmp_path / "done", summary={"status": "stopped_early", "best_metric": 0.9}, metrics=[])
    age(done / "metrics.jsonl", 30)
    assert index.info("done", done)["status"] == "stopped_early"
    running = make_run(tmp_path / "running", metrics=[{"step": 1, "split": "train", "loss": 1.0}])
    assert index.info("running", running)["status"] == "running"
    for name in ("config.yaml", "metrics.jsonl"):
        age(running / name, 120)
    assert index.info("running", running)["status"] == "interrupted"
    # A resumed run: metrics.jsonl rewritten after an old summary.json.
    resumed = make_run(tmp_path / "resumed", summary={"status": "failed"}, metrics=[])
    age(resumed / "summary.json", 30)
    assert index.info("resumed", resumed)["status"] == "running"


def test_running_run_best_metric_follows_the_trainers_direction(tmp_path: Path) -> None:
    evals = [
        {"step": 2, "split": "eval", "loss": 0.5, "accuracy": 0.7},
        {"step": 4, "split": "eval", "loss": 0.3, "accuracy": 0.6},
        {"step": 5, "split": "train", "loss": 0.1},
    ]
    index = RunIndex(tmp_path)
    acc = index.info("a", make_run(tmp_path / "a", metrics=evals))
    assert (acc["metric"], acc["best_metric"], acc["best_step"], acc["step"]) == ("accuracy", 0.7, 2, 5)
    lm = index.info("b", make_run(tmp_path / "b", metrics=evals, task="causal_lm"))
    assert (lm["metric"], lm["best_metric"], lm["best_step"]) == ("loss", 0.3, 4)
    flipped = make_run(
        tmp_path / "c", metrics=evals, train={"metric_for_best": "accuracy", "greater_is_better": False}
    )
    assert index.info("c", flipped)["best_metric"] == 0.6


def test_info_follows_a_growing_metrics_file(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", metrics=[{"step": 1, "split": "eval", "accuracy": 0.5}])
    index = RunIndex(tmp_path)
    assert index.info("r", run)["best_metric"] == 0.5
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 2, "split": "eval", "accuracy": 0.8}) + "\n")
    info = index.info("r", run)
    assert (info["best_metric"], info["step"]) == (0.8, 2)


def test_config_diff_marks_differences_and_absent_keys() -> None:
    a = {"lora": {"r": 8, "targets": ["q", "v"]}, "train": {"lr": 0.001}, "quantize": None}
    b = {"lora": {"r": 4, "targets": ["q", "v"]}, "train": {"lr": 0.001}}
    assert flatten(a) == {"lora.r": 8, "lora.targets": ["q", "v"], "train.lr": 0.001, "quantize": None}
    diff = config_diff({"a": a, "b": b, "c": None})
    by_key = {r["key"]: r for r in diff["rows"]}
    assert by_key["lora.r"]["values"] == [8, 4, MISSING] and by_key["lora.r"]["differs"]
    assert by_key["quantize"]["values"] == [None, MISSING, MISSING] and by_key["quantize"]["differs"]
    assert diff["missing_config"] == ["c"]
    same = config_diff({"a": a, "b": dict(a)})
    assert same["differing"] == 0 and len(same["rows"]) == 4


def state_trial(number: int, status: str, metric: float | None, params: int, r: int) -> dict:
    return {
        "number": number,
        "params": {"lora.r": r},
        "status": status,
        "dir": f"trials/trial-{number:03d}",
        "best_metric": metric,
        "trainable_params": params,
    }


def test_a_running_sweep_is_read_from_its_state(tmp_path: Path) -> None:
    trials = [
        state_trial(1, "completed", 0.80, 400, 4),
        state_trial(2, "completed", 0.90, 800, 8),
        state_trial(3, "completed", 0.90, 200, 2),  # as good and cheaper: ranks first
        state_trial(4, "pruned", 0.95, 100, 1),  # pruned trials are never best
        state_trial(5, "running", None, None, 16),
    ]
    state = {"version": 1, "fingerprint": {"metric": "accuracy", "direction": "maximize"}, "trials": trials}
    (tmp_path / "sweep_state.json").write_text(json.dumps(state))
    sweep = read_sweep("s", tmp_path)
    assert sweep["source"] == "sweep_state.json" and not sweep["finished"]
    assert sweep["best_trial"] == 3 and sweep["keys"] == ["lora.r"]
    assert sweep["counts"] == {"completed": 3, "pruned": 1, "running": 1}
    assert [t["run"] for t in sweep["trials"]][:2] == ["s/trials/trial-001", "s/trials/trial-002"]
    state["fingerprint"]["direction"] = "minimize"
    (tmp_path / "sweep_state.json").write_text(json.dumps(state))
    assert read_sweep(".", tmp_path)["best_trial"] == 1
    assert read_sweep(".", tmp_path)["trials"][0]["run"] == "trials/trial-001"


def test_a_finished_sweep_is_read_from_its_report(tmp_path: Path) -> None:
    (tmp_path / "sweep_state.json").write_text("{}")
    report = {"metric": "f1", "direction": "maximize", "keys": ["train.lr"], "best_trial": 2, "trials": []}
    (tmp_path / "sweep.json").write_text(json.dumps(report))
    age(tmp_path / "sweep_state.json", 10)
    sweep = read_sweep("s", tmp_path)
    assert (sweep["source"], sweep["best_trial"], sweep["metric"]) == ("sweep.json", 2, "f1")


def test_plot_names_are_plain_png_files_only(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    for name in ("b.png", "a.png", "notes.txt"):
        (plots / name).write_bytes(b"x")
    (plots / "dir.png").mkdir()
    (plots / "link.png").symlink_to(tmp_path / "sweep.json")
    assert plot_names(tmp_path) == ["a.png", "b.png"]


def test_linked_summary_and_config_are_ignored(tmp_path: Path) -> None:
    outside = make_run(
        tmp_path / "outside", summary={"status": "completed", "best_metric": 1.0}, task="seq2seq"
    )
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    for name in ("summary.json", "config.yaml"):
        (run / name).symlink_to(outside / name)
    info = RunIndex(tmp_path / "runs").info("r", run)
    assert info["status"] == "running" and info["best_metric"] is None and info["task"] is None
