"""A runs folder made by real tiny training runs and a real sweep report, for the page's tests.

Every file the page reads is written by lorakit itself: ``train`` writes the run folders
(config.yaml, metrics.jsonl, summary.json); the sweep folder's sweep.json, sweep.csv,
sweep_state.json and plots/ come from lorakit.sweep's report, state and plot writers over trials
trained in-process (``lorakit sweep`` would start one process per trial, too slow for a test).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import tiny_assets
from lorakit.runconfig.yaml_io import load_config
from lorakit.training.loop import train

XSS_NAME = "<img src=x onerror=alert(1)>"
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")
# (folder, task, overrides): trained on their own
RUNS = [
    ("ner-people-places", "token_classification", ["lora.r=8", "train.lr=0.05"]),
    ("numbers-lm", "causal_lm", ["lora.r=8", "train.lr=0.02"]),
]
SWEEP = "rank-sweep"
SWEEP_TRIALS = [
    {"lora.r": 2, "train.lr": 0.05},
    {"lora.r": 8, "train.lr": 0.05},
    {"lora.r": 8, "train.lr": 0.005},
]
# Top-level runs that are copies of sweep trials (saves training them twice): folder -> trial dir
TRIAL_COPIES = {
    "topics-r2": "trials/trial-001",
    "topics-r8": "trials/trial-002",
    XSS_NAME: "trials/trial-003",
}
STEPS = ["train.max_steps=36", "train.eval_every=6", "train.log_every=2", "train.save_every=null"]


def train_run(out: Path, config: Path, overrides: list[str]) -> dict:
    cfg = load_config(config, [*STEPS, *overrides, f"output_dir={out}"])
    summary = train(cfg)
    for name in ("adapter", "best_adapter", "checkpoints", "tensorboard"):
        shutil.rmtree(out / name, ignore_errors=True)  # the page does not read them
    return summary


def build_runs(root: Path, work: Path) -> Path:
    """Train the runs and the sweep under ``root`` (models and data go to ``work``)."""
    models = {kind: tiny_assets.make_model(work / kind, kind) for kind in ("bert", "llama")}
    configs = {
        task: tiny_assets.write_run(work / task, task, models[tiny_assets.MODEL_FOR[task]], n_train=48)
        for task in ("classification", "token_classification", "causal_lm")
    }
    for name, task, overrides in RUNS:
        train_run(root / name, configs[task], overrides)
    build_sweep(root / SWEEP, configs["classification"])
    for name, trial in TRIAL_COPIES.items():
        copy_run(root / SWEEP / trial, root / name)
    return root


def copy_run(src: Path, dst: Path, files: tuple[str, ...] = RUN_FILES) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy2(src / name, dst / name)
    return dst


def build_sweep(out: Path, config: Path) -> None:
    from lorakit.sweep.plots import write_plots
    from lorakit.sweep.report import build_report, write_report
    from lorakit.sweep.state import STATE_FILE, SweepState, TrialRecord

    state = SweepState(fingerprint={"metric": "accuracy", "direction": "maximize", "search": "grid"})
    for number, params in enumerate(SWEEP_TRIALS, start=1):
        rel = f"trials/trial-{number:03d}"
        overrides = [f"{k}={v}" for k, v in params.items()]
        s = train_run(out / rel, config, overrides)
        state.trials.append(
            TrialRecord(
                number=number,
                params=params,
                status="completed",
                dir=rel,
                train_status=s["status"],
                best_metric=s["best_metric"],
                best_step=s["best_step"],
                final_step=s["final_step"],
                trainable_params=s["trainable_params"],
                trainable_percent=s["trainable_percent"],
                wall_time_s=s["wall_time_s"],
                process_time_s=s["wall_time_s"],
            )
        )
    state.save(out / STATE_FILE)
    report = build_report(state, list(SWEEP_TRIALS[0]), "accuracy", "maximize")
    write_report(report, out)
    write_plots(report, out)
