"""The sweep loop against a stand-in trainer: resume, failures, pruning, parallel trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lorakit.sweep import PrunerSettings, SweepOptions, parse_space, run_sweep
from lorakit.sweep.state import STATE_FILE, SweepState, SweepStateError

FAKE = (sys.executable, str(Path(__file__).with_name("fake_trainer.py")))
NO_PRUNE = PrunerSettings(enabled=False)


def options(tmp_path: Path, grid: list[str], **kw) -> SweepOptions:
    config = tmp_path / "base.yaml"
    if not config.exists():
        config.write_text("model: fake\ntask: classification\n")
    kw.setdefault("pruner", NO_PRUNE)
    return SweepOptions(
        config=config,
        space=parse_space(grid),
        out_dir=tmp_path / "sweep",
        metric="accuracy",
        direction="maximize",
        train_command=FAKE,
        poll_s=0.02,
        **kw,
    )


def started(lines: list[str]) -> list[str]:
    return [ln for ln in lines if "] start" in ln]


def test_grid_runs_every_combination_and_records_results(tmp_path: Path) -> None:
    state = run_sweep(options(tmp_path, ["lora.r=2,8", "train.lr=1e-3,2e-3"]), echo=lambda s: None)
    assert [t.params for t in state.trials] == [
        {"lora.r": 2, "train.lr": 1e-3},
        {"lora.r": 2, "train.lr": 2e-3},
        {"lora.r": 8, "train.lr": 1e-3},
        {"lora.r": 8, "train.lr": 2e-3},
    ]
    assert all(t.status == "completed" for t in state.trials)
    assert [t.trainable_params for t in state.trials] == [2000, 2000, 8000, 8000]
    # r=8 learns faster in the stand-in, so its best accuracy is higher
    assert state.trials[2].best_metric > state.trials[0].best_metric
    assert state.trials[0].intermediate.keys() == {"5", "10", "15", "20"}
    saved = SweepState.load(tmp_path / "sweep" / STATE_FILE)
    assert [t.status for t in saved.trials] == ["completed"] * 4


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    state = run_sweep(options(tmp_path, ["train.lr=2.0,0.5,1e-3"]), echo=lambda s: None)
    diverged, crashed, ok = state.trials
    assert diverged.status == "failed" and "NaN at step 3" in diverged.reason
    assert crashed.status == "failed"
    assert "exited with code 1" in crashed.reason and "simulated crash" in crashed.reason
    assert ok.status == "completed" and ok.best_metric is not None
    lines: list[str] = []
    run_sweep(options(tmp_path, ["train.lr=2.0,0.5,1e-3"]), echo=lines.append)
    assert started(lines) == []
    again = run_sweep(options(tmp_path, ["train.lr=2.0,0.5,1e-3"], retry_failed=True), echo=lines.append)
    assert len(started(lines)) == 2
    assert [(t.status, t.attempt) for t in again.trials] == [("failed", 2), ("failed", 2), ("completed", 1)]


def test_rerun_skips_finished_trials_and_restarts_interrupted_ones(tmp_path: Path) -> None:
    opts = options(tmp_path, ["lora.r=2,4,8"])
    run_sweep(opts, echo=lambda s: None)
    # Simulate a sweep killed while trial 1 ran: its record still says running.
    path = tmp_path / "sweep" / STATE_FILE
    data = json.loads(path.read_text())
    data["trials"][1]["status"] = "running"
    path.write_text(json.dumps(data))
    lines: list[str] = []
    state = run_sweep(opts, echo=lines.append)
    assert started(lines) == ["[trial 2/3] start  lora.r=4 (attempt 2)"]
    t = state.trials[1]
    assert (t.status, t.attempt, t.dir, t.previous_dirs) == (
        "completed",
        2,
        "trials/trial-002-attempt2",
        ["trials/trial-002"],
    )
    assert (tmp_path / "sweep" / t.dir / "summary.json").is_file()
    lines.clear()
    run_sweep(opts, echo=lines.append)
    assert started(lines) == []


def test_ctrl_c_stops_trials_and_the_rerun_completes_only_the_rest(tmp_path: Path) -> None:
    opts = options(tmp_path, ["lora.r=2,4,8"], overrides=("fake.step_s=0.02",))

    def interrupt_on_second(line: str) -> None:
        if line.startswith("[trial 2/3] start"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(opts, echo=interrupt_on_second)
    saved = SweepState.load(tmp_path / "sweep" / STATE_FILE)
    assert [t.status for t in saved.trials] == ["completed", "running"]
    lines: list[str] = []
    state = run_sweep(opts, echo=lines.append)
    assert [ln.split("  ")[1] for ln in started(lines)] == [
        "lora.r=4 (attempt 2)",
        "lora.r=8",
    ]
    assert [t.status for t in state.trials] == ["completed"] * 3
    assert state.trials[0].attempt == 1


def test_median_pruner_stops_trials_that_fall_behind(tmp_path: Path) -> None:
    pruner = PrunerSettings(enabled=True, startup_trials=2)
    opts = options(
        tmp_path, ["lora.r=8,16,1,2"], overrides=("fake.step_s=0.03", "train.max_steps=40"), pruner=pruner
    )
    state = run_sweep(opts, echo=lambda s: None)
    assert [t.status for t in state.trials] == ["completed", "completed", "pruned", "pruned"]
    for t in state.trials[2:]:
        assert "worse than the median" in t.reason
        assert t.wall_time_s < state.trials[0].wall_time_s
        assert t.best_metric is not None


def test_parallel_trials_overlap(tmp_path: Path) -> None:
    opts = options(tmp_path, ["lora.r=2,4,8,16"], overrides=("fake.step_s=0.05",), parallel=2)
    state = run_sweep(opts, echo=lambda s: None)
    spans = []
    for t in state.trials:
        s = json.loads((tmp_path / "sweep" / t.dir / "summary.json").read_text())
        spans.append((s["started_at"], s["finished_at"]))
    assert all(t.status == "completed" for t in state.trials)
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])


def test_random_search_samples_the_space_and_extends_on_resume(tmp_path: Path) -> None:
    grid = ["lora.r=2,4,8", "train.lr=1e-4..1e-2:log"]
    state = run_sweep(options(tmp_path, grid, search="random", trials=3), echo=lambda s: None)
    assert len(state.trials) == 3
    for t in state.trials:
        assert t.params["lora.r"] in (2, 4, 8) and 1e-4 <= t.params["train.lr"] <= 1e-2
    lines: list[str] = []
    state = run_sweep(options(tmp_path, grid, search="random", trials=5), echo=lines.append)
    assert len(started(lines)) == 2 and len(state.trials) == 5
    assert len({json.dumps(t.params) for t in state.trials}) == 5


def test_tpe_search_runs_the_requested_number_of_trials(tmp_path: Path) -> None:
    state = run_sweep(options(tmp_path, ["lora.r=1..16"], search="tpe", trials=4), echo=lambda s: None)
    assert len(state.trials) == 4
    assert all(isinstance(t.params["lora.r"], int) and 1 <= t.params["lora.r"] <= 16 for t in state.trials)


def test_a_different_sweep_in_the_same_directory_is_refused(tmp_path: Path) -> None:
    run_sweep(options(tmp_path, ["lora.r=2"]), echo=lambda s: None)
    with pytest.raises(SweepStateError, match="budget_steps: was None, now 5"):
        run_sweep(options(tmp_path, ["lora.r=2"], budget_steps=5), echo=lambda s: None)
