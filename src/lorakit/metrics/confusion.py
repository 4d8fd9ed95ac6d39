"""The confusion matrix of a classifier and its PNG (matplotlib's object API: no global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def confusion_counts(gold: Sequence[int], pred: Sequence[int], n_labels: int) -> list[list[int]]:
    """counts[g][p]: examples of gold label g predicted as p."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    counts = [[0] * n_labels for _ in range(n_labels)]
    for g, p in zip(gold, pred, strict=True):
        counts[g][p] += 1
    return counts


def write_confusion_png(
    path: Path, labels: Sequence[str], counts: Sequence[Sequence[int]], title: str
) -> Path:
    """Rows: gold label; columns: predicted label; each cell shows its count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(labels)
    size = max(3.5, 0.6 * n + 2)
    fig = Figure(figsize=(size, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), [str(x) for x in labels], rotation=45, ha="right")
    ax.set_yticks(range(n), [str(x) for x in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    peak = max((max(r) for r in counts), default=0)
    if n <= 30:
        for g in range(n):
            for p in range(n):
                colour = "white" if counts[g][p] > peak / 2 else "black"
                ax.text(p, g, str(counts[g][p]), ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
