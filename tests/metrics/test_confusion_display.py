"""Confusion matrix counts and PNG; the text rendering of nested metrics."""

from __future__ import annotations

from pathlib import Path

from lorakit.metrics import confusion_counts, format_metrics, scalar_metrics, write_confusion_png


def test_confusion_counts_rows_gold_columns_pred() -> None:
    assert confusion_counts([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3) == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_confusion_png(tmp_path: Path) -> None:
    path = write_confusion_png(tmp_path / "plots" / "cm.png", ["neg", "pos"], [[5, 1], [2, 7]], "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_format_metrics_shows_every_part() -> None:
    metrics = {
        "loss": 0.25,
        "f1": 0.5,
        "bleu_signature": "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
        "per_type": {"PER": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}},
        "confusion_matrix": {"labels": ["a", "b"], "counts": [[3, 1], [0, 4]]},
    }
    text = format_metrics("eval", metrics)
    assert "nrefs:var|case:mixed" in text and "0.2500" in text
    assert any(line.split()[:5] == ["PER", "1.0000", "0.5000", "0.6667", "2"] for line in text.splitlines())
    assert any(line.split() == ["a", "3", "1"] for line in text.splitlines())
    assert scalar_metrics(metrics) == {"loss": 0.25, "f1": 0.5}
