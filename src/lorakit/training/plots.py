"""PNG plots of a run from metrics.jsonl: train/validation loss and the main metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorakit.metrics import write_confusion_png
from lorakit.training.reporting import last_eval_row, read_metrics


def _series(rows: list[dict], split: str, key: str) -> tuple[list[int], list[float]]:
    pts = [
        (r["step"], r[key]) for r in rows if r.get("split") == split and isinstance(r.get(key), (int, float))
    ]
    return [p[0] for p in pts], [p[1] for p in pts]


def _eval_metrics(rows: list[dict]) -> list[str]:
    """Numeric validation metrics other than the loss, in the order they first appear."""
    seen: dict[str, None] = {}
    for r in rows:
        if r.get("split") == "eval":
            for k, v in r.items():
                if k not in ("step", "split", "loss") and isinstance(v, (int, float)):
                    seen.setdefault(k)
    return list(seen)


def write_plots(output_dir: Path, main_metric: str) -> list[Path]:
    """loss.png (train and validation loss), <metric>.png per validation metric and, for
    classification, confusion_matrix.png of the last evaluation; returns the files.

    Figures are drawn on their own Agg canvas: no pyplot state, no backend switch, no display.
    """
    rows = read_metrics(output_dir / "metrics.jsonl")
    plots_dir = output_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = _figure()
    for split, style in (("train", "-"), ("eval", "o-")):
        x, y = _series(rows, split, "loss")
        if x:
            ax.plot(x, y, style, label=f"{'validation' if split == 'eval' else 'train'} loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if ax.lines:
        ax.legend()
    written = [_save(fig, ax, plots_dir / "loss.png")]
    # The task's metrics matter to a reader even when the best checkpoint is chosen by loss.
    metrics = [main_metric] if main_metric != "loss" else _eval_metrics(rows)
    for metric in metrics:
        x, y = _series(rows, "eval", metric)
        if not x:
            continue
        fig, ax = _figure()
        ax.plot(x, y, "o-")
        ax.set_xlabel("step")
        ax.set_ylabel(f"validation {metric}")
        name = "".join(c if c.isalnum() or c in "_-" else "_" for c in metric)
        written.append(_save(fig, ax, plots_dir / f"{name}.png"))
    last = last_eval_row(output_dir / "metrics.jsonl")
    matrix = last.get("confusion_matrix") if last else None
    if isinstance(matrix, dict):  # classification: the final evaluation's confusion matrix
        title = f"validation @ step {last['step']}"  # type: ignore[index]
        written.append(
            write_confusion_png(plots_dir / "confusion_matrix.png", matrix["labels"], matrix["counts"], title)
        )
    return written


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, ax: Any, path: Path) -> Path:
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
