"""Metric dicts as text: scalars in one table, then signatures, per-type tables and matrices."""

from __future__ import annotations

from typing import Any


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries (what TensorBoard, plots and metric_for_best use)."""
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _scalars(title: str, metrics: dict[str, Any]) -> list[str]:
    shown = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    width = max((len(k) for k in shown), default=6)
    lines = [title, "-" * max(len(title), width + 14)]
    for key, value in shown.items():
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}}  {text:>10}" if len(text) <= 10 else f"  {key:<{width}}  {text}")
    return lines


def _per_type(rows: dict[str, dict[str, Any]]) -> list[str]:
    width = max([len(k) for k in rows] + [4])
    lines = [f"  {'type':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}"]
    for kind, r in rows.items():
        scores = f"{r['precision']:>9.4f}  {r['recall']:>9.4f}  {r['f1']:>9.4f}"
        lines.append(f"  {kind:<{width}}  {scores}  {r['support']:>7}")
    return lines


def _matrix(matrix: dict[str, Any]) -> list[str]:
    labels = [str(x) for x in matrix["labels"]]
    corner = "gold/pred"
    width = max([len(x) for x in labels] + [len(corner)])
    cell = max([len(x) for x in labels] + [len(str(c)) for r in matrix["counts"] for c in r] + [4])
    lines = [f"  {corner:<{width}}  " + "  ".join(f"{x:>{cell}}" for x in labels)]
    for label, row in zip(labels, matrix["counts"], strict=True):
        lines.append(f"  {label:<{width}}  " + "  ".join(f"{c:>{cell}}" for c in row))
    return lines


def format_metrics(title: str, metrics: dict[str, Any]) -> str:
    """A table of the scalar metrics and strings (e.g. sacrebleu signatures), followed by the
    per-entity-type table (``per_type``) and the confusion matrix (``confusion_matrix``)."""
    lines = _scalars(title, metrics)
    if isinstance(metrics.get("per_type"), dict) and metrics["per_type"]:
        lines += ["  per entity type:", *_per_type(metrics["per_type"])]
    if isinstance(metrics.get("confusion_matrix"), dict):
        lines += [
            "  confusion matrix (rows: gold, columns: predicted):",
            *_matrix(metrics["confusion_matrix"]),
        ]
    return "\n".join(lines)
