"""The sweep report: a table on screen, ``sweep.csv`` and ``sweep.json``."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorakit.adapter_io.integrity import atomic_write_text
from lorakit.sweep.metrics import Direction
from lorakit.sweep.space import format_value
from lorakit.sweep.state import SweepState, TrialRecord

# A trial within this relative distance of the best counts as "as good" when looking for the
# cheapest configuration (the run-to-run noise of a short fine-tune is at least this large).
EFFICIENT_TOLERANCE = 0.01


@dataclass(frozen=True)
class SweepReport:
    """The ranked outcome of a sweep."""

    metric: str
    direction: Direction
    keys: list[str]
    """Swept keys, in --grid order."""
    trials: list[TrialRecord]
    """All trials, by trial number."""
    best: TrialRecord | None
    """Best completed trial (ties: fewer trainable parameters)."""
    efficient: TrialRecord | None
    """Completed trial with the fewest trainable parameters within EFFICIENT_TOLERANCE of the best."""

    def ranked(self) -> list[TrialRecord]:
        """Completed trials, best first."""
        done = [t for t in self.trials if t.status == "completed" and t.best_metric is not None]
        return sorted(done, key=self._sort_key)

    def _sort_key(self, t: TrialRecord) -> tuple[float, int, int]:
        value = t.best_metric if t.best_metric is not None else 0.0
        return (-value if self.direction == "maximize" else value, t.trainable_params or 0, t.number)


def build_report(state: SweepState, keys: list[str], metric: str, direction: Direction) -> SweepReport:
    trials = sorted(state.trials, key=lambda t: t.number)
    report = SweepReport(metric, direction, keys, trials, None, None)
    ranked = report.ranked()
    best = ranked[0] if ranked else None
    efficient = None
    if best is not None and best.best_metric is not None:
        slack = EFFICIENT_TOLERANCE * max(abs(best.best_metric), 1e-12)
        ok = [t for t in ranked if abs(t.best_metric - best.best_metric) <= slack]  # type: ignore[operator]
        efficient = min(ok, key=lambda t: (t.trainable_params or 0, t.number))
    return SweepReport(metric, direction, keys, trials, best, efficient)


def rows(report: SweepReport) -> list[dict[str, Any]]:
    """One flat row per trial (params as one column per key)."""
    out = []
    for t in report.trials:
        row: dict[str, Any] = {"trial": t.number, "status": t.status}
        row.update({k: t.params.get(k) for k in report.keys})
        row.update(
            {
                "trainable_params": t.trainable_params,
                "trainable_percent": t.trainable_percent,
                f"best_{report.metric}": t.best_metric,
                "best_step": t.best_step,
                "wall_time_s": t.wall_time_s,
                "process_time_s": t.process_time_s,
                "reason": t.reason or "",
                "dir": t.dir,
            }
        )
        out.append(row)
    return out


def format_table(report: SweepReport) -> str:
    """A fixed-width table, best trial marked with '*'."""
    header = ["trial", *report.keys, "trainable", f"best {report.metric}", "step", "wall s", "status"]
    lines = []
    for t in report.trials:
        mark = "*" if report.best is not None and t.number == report.best.number else " "
        lines.append(
            [
                f"{mark}{t.number}",
                *(format_value(t.params[k]) if k in t.params else "-" for k in report.keys),
                f"{t.trainable_params:,}" if t.trainable_params is not None else "-",
                f"{t.best_metric:.4f}" if t.best_metric is not None else "-",
                str(t.best_step) if t.best_step is not None else "-",
                f"{t.wall_time_s:.1f}" if t.wall_time_s is not None else "-",
                t.status + (f": {_short(t.reason)}" if t.status == "failed" and t.reason else ""),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths[:-1]) + "  {}"
    text = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    text += [fmt.format(*line) for line in lines]
    text += _verdict(report)
    return "\n".join(text)


def write_report(report: SweepReport, out_dir: Path) -> None:
    """sweep.csv (one row per trial) and sweep.json (the same plus the verdict)."""
    table = rows(report)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]) if table else ["trial"], lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    atomic_write_text(out_dir / "sweep.csv", buf.getvalue())
    data = {
        "metric": report.metric,
        "direction": report.direction,
        "keys": report.keys,
        "best_trial": report.best.number if report.best else None,
        "efficient_trial": report.efficient.number if report.efficient else None,
        "counts": {
            s: sum(t.status == s for t in report.trials) for s in ("completed", "failed", "pruned", "running")
        },
        "trials": [_trial_json(t, report.metric) for t in report.trials],
    }
    atomic_write_text(out_dir / "sweep.json", json.dumps(data, indent=2) + "\n")


def _trial_json(t: TrialRecord, metric: str) -> dict[str, Any]:
    return {
        "trial": t.number,
        "status": t.status,
        "params": t.params,
        "trainable_params": t.trainable_params,
        "trainable_percent": t.trainable_percent,
        "metric": metric,
        "best_metric": t.best_metric,
        "best_step": t.best_step,
        "final_step": t.final_step,
        "wall_time_s": t.wall_time_s,
        "process_time_s": t.process_time_s,
        "train_status": t.train_status,
        "reason": t.reason,
        "attempt": t.attempt,
        "dir": t.dir,
        "host": t.host,
    }


def _verdict(report: SweepReport) -> list[str]:
    counts = {s: sum(t.status == s for t in report.trials) for s in ("completed", "failed", "pruned")}
    out = ["", ", ".join(f"{n} {s}" for s, n in counts.items())]
    if report.best is None:
        return [*out, "no trial completed: no best configuration"]
    best = report.best
    out.append(f"best: trial {best.number} {_params(best)} {report.metric}={best.best_metric:.4f}")
    eff = report.efficient
    if eff is not None and eff.number != report.best.number:
        out.append(
            f"cheapest within {EFFICIENT_TOLERANCE:.0%} of best: trial {eff.number} {_params(eff)} "
            f"{report.metric}={eff.best_metric:.4f} with {eff.trainable_params:,} trainable params"
        )
    return out


def _params(t: TrialRecord) -> str:
    return "(" + ", ".join(f"{k}={format_value(v)}" for k, v in t.params.items()) + ")"


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."
