"""PNG plots of a sweep: metric vs rank, metric vs trainable parameters, top learning curves.

Figures are drawn on the Agg canvas directly, so plotting never touches pyplot's global state
or needs a display.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lorakit.adapter_io.integrity import atomic_write_bytes
from lorakit.sweep.metrics import eval_points, read_metrics
from lorakit.sweep.report import SweepReport
from lorakit.sweep.space import format_value
from lorakit.sweep.state import TrialRecord

RANK_KEY = "lora.r"
TOP_CURVES = 5


def write_plots(report: SweepReport, out_dir: Path) -> list[Path]:
    """Write the plots under ``out_dir/plots``; returns the files written."""
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    scored = [t for t in report.trials if t.best_metric is not None and t.status in ("completed", "pruned")]
    written = []
    if scored:
        written.append(_scatter(report, scored, out_dir, "rank", plot_dir / "metric_vs_rank.png"))
        written.append(_scatter(report, scored, out_dir, "trainable", plot_dir / "metric_vs_trainable.png"))
    top = report.ranked()[:TOP_CURVES]
    if top:
        written.append(_learning_curves(report, top, out_dir, plot_dir / "learning_curves.png"))
    return written


def trial_rank(t: TrialRecord, out_dir: Path) -> int | None:
    """The trial's LoRA rank: swept, else from the trial's resolved config."""
    if isinstance(t.params.get(RANK_KEY), int):
        return t.params[RANK_KEY]
    try:
        cfg = yaml.safe_load((out_dir / t.dir / "config.yaml").read_text())
        rank = cfg["lora"]["r"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return rank if isinstance(rank, int) else None


def _scatter(report: SweepReport, trials: list[TrialRecord], out_dir: Path, x_kind: str, path: Path) -> Path:
    """One line per combination of the other swept keys; hollow markers for pruned trials."""
    others = [k for k in report.keys if not (x_kind == "rank" and k == RANK_KEY)]
    groups: dict[str, list[tuple[float, float, bool]]] = defaultdict(list)
    for t in trials:
        x = trial_rank(t, out_dir) if x_kind == "rank" else t.trainable_params
        if x is None or t.best_metric is None:
            continue
        label = ", ".join(f"{k}={format_value(t.params.get(k))}" for k in others) or "all trials"
        groups[label].append((float(x), t.best_metric, t.status == "pruned"))
    fig = Figure(figsize=(6.4, 4.4), dpi=110)
    ax = fig.add_subplot()
    for label, pts in sorted(groups.items()):
        pts.sort()
        (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", alpha=0.6, label=label)
        for x, y, pruned in pts:
            face = "none" if pruned else line.get_color()
            ax.plot([x], [y], "o", color=line.get_color(), markerfacecolor=face, markersize=7)
    ax.set_xscale("log", base=2 if x_kind == "rank" else 10)
    if x_kind == "rank":
        ranks = sorted({p[0] for pts in groups.values() for p in pts})
        ax.set_xticks(ranks, [f"{r:g}" for r in ranks])
        ax.set_xlabel("LoRA rank r")
    else:
        ax.set_xlabel("trainable parameters")
    ax.set_ylabel(f"best validation {report.metric}")
    ax.set_title(f"validation {report.metric} vs {'rank' if x_kind == 'rank' else 'trainable parameters'}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="hollow: pruned" if any(t.status == "pruned" for t in trials) else None)
    return _save(fig, path)


def _learning_curves(report: SweepReport, top: list[TrialRecord], out_dir: Path, path: Path) -> Path:
    fig = Figure(figsize=(11, 4.2), dpi=110)
    ax_eval, ax_loss = fig.subplots(1, 2)
    for t in top:
        records = read_metrics(out_dir / t.dir / "metrics.jsonl")
        label = f"#{t.number} " + ", ".join(f"{k}={format_value(v)}" for k, v in t.params.items())
        pts = eval_points(records, report.metric)
        (line,) = ax_eval.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label, markersize=3)
        loss = _train_loss(records)
        ax_loss.plot([p[0] for p in loss], [p[1] for p in loss], "-", color=line.get_color(), label=label)
    ax_eval.set(
        xlabel="step", ylabel=f"validation {report.metric}", title=f"top {len(top)} trials: validation"
    )
    ax_loss.set(xlabel="step", ylabel="train loss", title="train loss")
    for ax in (ax_eval, ax_loss):
        ax.grid(True, alpha=0.3)
    ax_eval.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _train_loss(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [
        (r["step"], float(r["loss"]))
        for r in records
        if r.get("split") == "train"
        and isinstance(r.get("step"), int)
        and isinstance(r.get("loss"), (int, float))
    ]


def _save(fig: Figure, path: Path) -> Path:
    # Atomic with a unique temporary name: workers of a shared sweep may write the same plot at once.
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return path
