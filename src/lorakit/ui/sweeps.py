"""A sweep folder as the page shows it: the trial table, the best trial and the plots.

``lorakit sweep`` writes sweep.json (the report) when it ends and sweep_state.json after every
trial; a sweep still running (or resumed after its last report) is read from the state file,
ranking its completed trials the way the report does (metric, then fewer trainable parameters,
then trial number).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorakit.ui.runs import mtime, read_json

PLOT_SUFFIX = ".png"


def trial_run_id(sweep_id: str, trial_dir: str) -> str:
    return trial_dir if sweep_id == "." else f"{sweep_id}/{trial_dir}"


def plot_names(folder: Path) -> list[str]:
    plots = folder / "plots"
    if not plots.is_dir():
        return []
    return sorted(
        p.name for p in plots.iterdir() if p.suffix == PLOT_SUFFIX and p.is_file() and not p.is_symlink()
    )


def read_sweep(sweep_id: str, folder: Path) -> dict[str, Any]:
    """Metric, direction, swept keys, trials (with their run ids), best trial and plot names."""
    report, state = read_json(folder / "sweep.json"), read_json(folder / "sweep_state.json")
    report_time, state_time = mtime(folder / "sweep.json"), mtime(folder / "sweep_state.json")
    fresh_report = report is not None and (state_time is None or (report_time or 0) + 1.0 >= state_time)
    data = _from_report(report) if fresh_report else _from_state(state or {})  # type: ignore[arg-type]
    for trial in data["trials"]:
        trial["run"] = trial_run_id(sweep_id, trial["dir"]) if trial.get("dir") else None
    counts: dict[str, int] = {}
    for trial in data["trials"]:
        counts[trial["status"]] = counts.get(trial["status"], 0) + 1
    name = folder.name
    return {
        "id": sweep_id,
        "name": name,
        "source": "sweep.json" if fresh_report else "sweep_state.json",
        **data,
        "counts": counts,
        "plots": plot_names(folder),
    }


def _trial(raw: dict[str, Any], number_key: str) -> dict[str, Any]:
    params = raw.get("params") if isinstance(raw.get("params"), dict) else {}
    return {
        "trial": raw.get(number_key),
        "status": str(raw.get("status") or "unknown"),
        "params": params,
        "trainable_params": raw.get("trainable_params"),
        "trainable_percent": raw.get("trainable_percent"),
        "best_metric": raw.get("best_metric"),
        "best_step": raw.get("best_step"),
        "wall_time_s": raw.get("wall_time_s"),
        "reason": raw.get("reason"),
        "dir": raw.get("dir") if isinstance(raw.get("dir"), str) else None,
    }


def _from_report(report: dict[str, Any]) -> dict[str, Any]:
    trials = [_trial(t, "trial") for t in report.get("trials") or [] if isinstance(t, dict)]
    return {
        "metric": report.get("metric"),
        "direction": report.get("direction"),
        "keys": [k for k in report.get("keys") or [] if isinstance(k, str)],
        "trials": trials,
        "best_trial": report.get("best_trial"),
        "efficient_trial": report.get("efficient_trial"),
        "finished": True,
    }


def _from_state(state: dict[str, Any]) -> dict[str, Any]:
    fingerprint = state.get("fingerprint") if isinstance(state.get("fingerprint"), dict) else {}
    metric, direction = fingerprint.get("metric"), fingerprint.get("direction")
    trials = sorted(
        (_trial(t, "number") for t in state.get("trials") or [] if isinstance(t, dict)),
        key=lambda t: t["trial"] if isinstance(t["trial"], int) else 0,
    )
    keys: list[str] = []
    for t in trials:
        keys += [k for k in t["params"] if k not in keys]
    done = [t for t in trials if t["status"] == "completed" and isinstance(t["best_metric"], (int, float))]
    sign = -1.0 if direction == "maximize" else 1.0
    best = min(
        done,
        key=lambda t: (sign * t["best_metric"], t["trainable_params"] or 0, t["trial"] or 0),
        default=None,
    )
    return {
        "metric": metric,
        "direction": direction,
        "keys": keys,
        "trials": trials,
        "best_trial": best["trial"] if best else None,
        "efficient_trial": None,
        "finished": False,
    }
