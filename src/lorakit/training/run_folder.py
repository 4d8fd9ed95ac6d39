"""The run folder: whether a new run may write there, what a fresh run clears, and the
adapter folders a run leaves (each one loadable by eval / predict / merge / generate).

A folder holding a run is never overwritten silently. A fresh ``lorakit train`` into it is
refused unless ``--overwrite`` (which first clears every output of the old run, including a
``merged/`` model made from it) or ``--resume`` (which continues from the newest checkpoint).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.errors import ConfigError, RunExistsError
from lorakit.extras import available, missing_message
from lorakit.runconfig.schema import RunConfig
from lorakit.tasks.common import TASK_FILE, write_task_file
from lorakit.training.checkpoint import list_checkpoints
from lorakit.training.setup import Run

BEST_DIR = "best_adapter"
FINAL_DIR = "adapter"
# Everything a run (or `lorakit merge --out <run>/merged`) writes in its folder.
RUN_OUTPUTS = (
    FINAL_DIR,
    BEST_DIR,
    "checkpoints",
    "merged",
    "tensorboard",
    "plots",
    "metrics.jsonl",
    "summary.json",
)
# Outputs that hold results: a fresh run over any of them needs --overwrite.
RESULTS = (FINAL_DIR, BEST_DIR, "checkpoints", "summary.json")


def check_output_dir(config: RunConfig, overwrite: bool) -> None:
    """Refuse, before anything loads, a run that would overwrite another one's results."""
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir = {str(out)!r} is a file, not a folder; choose a folder for the run")
    if overwrite and config.resume == "auto":
        raise ConfigError("--overwrite starts the run again from scratch, --resume continues it: give one")
    if overwrite or not out.is_dir():
        return
    checkpoints = list_checkpoints(out / "checkpoints")
    if config.resume == "auto" and checkpoints:
        return
    found = [name for name in RESULTS if (out / name).exists()]
    if config.resume == "auto":
        finished = [n for n in ("summary.json", FINAL_DIR) if (out / n).exists()]
        if finished:
            raise RunExistsError(
                f"nothing to resume in {out}: it holds a finished run ({', '.join(finished)}) and no "
                "checkpoint (train.save_every). Keep it and train into a new folder (--output-dir DIR), "
                "or start again from scratch with --overwrite"
            )
        return  # an interrupted start-up left no checkpoint: a fresh start loses nothing
    if found:
        raise RunExistsError(
            f"{out} already holds a run ({describe_run(out, found)}); lorakit train does not replace it "
            "silently. Continue it with --resume (to train longer: --resume train.max_steps=N "
            "resume_allow_changes=[train.max_steps]), train into a new folder with --output-dir DIR, or "
            "replace it with --overwrite (deletes its adapter/, best_adapter/, checkpoints/, merged/, "
            "metrics, plots and TensorBoard events)"
        )


def describe_run(out: Path, found: list[str]) -> str:
    summary = _read_json(out / "summary.json")
    if summary.get("status"):
        best = summary.get("best_metric")
        metric = summary.get("metric_for_best", "metric")
        shown = f", best {metric} {best:.4g} at step {summary.get('best_step')}" if best is not None else ""
        return f"status {summary['status']} at step {summary.get('final_step')}{shown}"
    checkpoints = list_checkpoints(out / "checkpoints")
    if checkpoints:
        return f"an interrupted run, newest checkpoint {checkpoints[-1].name}"
    return ", ".join(f"{name}/" if (out / name).is_dir() else name for name in found)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def clear_run_outputs(out: Path) -> list[str]:
    """Remove every output of an earlier run in ``out``; returns the names removed."""
    removed = []
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def write_tokenizer(tokenizer: Any, folder: Path) -> None:
    """The tokenizer's files into ``folder``, each one renamed into place (never half written)."""
    staging = folder / ".tokenizer.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer.save_pretrained(str(staging))
        for file in sorted(staging.iterdir()):
            os.replace(file, folder / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def complete_adapter_folder(folder: Path, tokenizer: Any, task_info: dict[str, Any]) -> None:
    """Add what eval / predict / merge need besides the weights: tokenizer and lorakit_task.json."""
    write_tokenizer(tokenizer, folder)
    write_task_file(folder, task_info)


def is_complete_adapter(folder: Path) -> bool:
    return (folder / TASK_FILE).is_file() and (folder / "adapter_model.safetensors").is_file()


@dataclass
class InterruptedRun:
    """What an interrupted run left, and the commands that finish or use it."""

    output_dir: Path
    step: int
    total_steps: int
    best: Path | None
    best_note: str
    command: str = "lorakit train CONFIG"

    def describe(self) -> str:
        checkpoints = list_checkpoints(self.output_dir / "checkpoints")
        lines = [f"at step {self.step} of {self.total_steps}; what is kept in {self.output_dir}:"]
        if checkpoints:
            newest = checkpoints[-1]
            done = int(newest.name.split("-")[1])
            lines.append(
                f"  finish the run:  {self.command} --resume   (continues from {newest.name} to step "
                f"{self.total_steps})"
            )
            lines.append(
                f"  train longer:    {self.command} --resume train.max_steps=N "
                "resume_allow_changes=[train.max_steps]"
            )
            if done < self.total_steps:
                lines.append(
                    f"  stop at {newest.name}: {self.command} --resume train.max_steps={done} "
                    "resume_allow_changes=[train.max_steps]   (writes adapter/ without training further)"
                )
        else:
            lines.append(
                f"  no checkpoint yet (train.save_every): start again with {self.command} --overwrite"
            )
        usable = [str(self.best) + f" ({self.best_note})"] if self.best else []
        if checkpoints and is_complete_adapter(checkpoints[-1] / FINAL_DIR):
            usable.append(str(checkpoints[-1] / FINAL_DIR) + f" (step {checkpoints[-1].name.split('-')[1]})")
        if usable:
            lines.append("  use it now:      --adapter " + ", or --adapter ".join(usable))
        return "\n".join(lines)


def interrupted_report(run: Run) -> InterruptedRun:
    best = run.output_dir / BEST_DIR
    state = run.state
    has_best = state.best_step is not None and state.best_metric is not None
    note = f"best {run.metric} {state.best_metric:.4g} at step {state.best_step}" if has_best else ""
    usable = has_best and is_complete_adapter(best)
    return InterruptedRun(run.output_dir, state.step, run.total_steps, best if usable else None, note)


def missing_outputs() -> list[str]:
    """Notes for the optional outputs a run skips because their extra is not installed."""
    wanted = {"tensorboard": "no TensorBoard events", "matplotlib": "no plots/"}
    return [f"{what}: {missing_message(module)}" for module, what in wanted.items() if not available(module)]
