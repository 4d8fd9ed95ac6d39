"""What a person sees and what lands on disk: progress bar, eval tables, metrics.jsonl,
TensorBoard events, summary.json. Only the main process writes (``is_main``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from lorakit.adapter_io.integrity import atomic_write_text
from lorakit.extras import available
from lorakit.metrics import format_metrics

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


def format_table(title: str, metrics: dict[str, float]) -> str:
    width = max(len(k) for k in metrics) if metrics else 6
    lines = [title, "-" * max(len(title), width + 14)]
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}}  {shown:>10}")
    return "\n".join(lines)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    return rows


def last_eval_row(path: Path) -> dict[str, Any] | None:
    """The newest evaluation line of metrics.jsonl (without its "split"), or None."""
    rows = [r for r in read_metrics(path) if r.get("split") == "eval"]
    return {k: v for k, v in rows[-1].items() if k != "split"} if rows else None


class Reporter:
    """Rank-0 output of one training run."""

    def __init__(self, output_dir: Path, is_main: bool = True, stream: TextIO | None = None) -> None:
        self.dir = output_dir
        self.is_main = is_main
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None
        self._tb: Any = None
        self._last = time.perf_counter()
        self._samples = 0
        self._tokens = 0

    def start(self, resume_step: int, total_steps: int) -> None:
        """Open outputs; after a resume, drop metric lines from beyond the checkpoint."""
        if not self.is_main:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / METRICS_FILE
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= resume_step] if resume_step else []
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        self._tb = _tensorboard(self.dir / "tensorboard", resume_step)
        self.bar = tqdm(
            total=total_steps,
            initial=resume_step,
            desc="train",
            unit="step",
            file=self.stream,
            dynamic_ncols=True,
            mininterval=0.5,
        )

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        row = {"step": step, "split": split, **metrics}
        with open(self.dir / METRICS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{split}/{key}", value, step)

    def count(self, samples: int, tokens: int) -> None:
        self._samples += samples
        self._tokens += tokens

    def progress(self, loss: float, lr: float) -> dict[str, float]:
        """Advance the bar by one step; returns the throughput since the last call."""
        now = time.perf_counter()
        dt = max(now - self._last, 1e-9)
        rates = {"samples_per_s": self._samples / dt, "tokens_per_s": self._tokens / dt}
        self._last, self._samples, self._tokens = now, 0, 0
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{loss:.4f}",
                lr=f"{lr:.2e}",
                samples_s=f"{rates['samples_per_s']:.1f}",
                tokens_s=f"{rates['tokens_per_s']:.0f}",
                refresh=False,
            )
            self.bar.update(1)
        return rates

    def say(self, text: str) -> None:
        if not self.is_main:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)
        self._last = time.perf_counter()  # time spent evaluating is not training throughput

    def eval_table(self, step: int, split: str, metrics: dict[str, float], best: bool) -> None:
        mark = "  (best so far)" if best else ""
        self.say(format_metrics(f"eval {split} @ step {step}{mark}", metrics))

    def finish(self, summary: dict[str, Any]) -> None:
        if not self.is_main:
            return
        if self.bar is not None:
            self.bar.close()
        if self._tb is not None:
            self._tb.close()
        atomic_write_text(self.dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        shown = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
        print(format_table(f"summary ({self.dir})", shown), file=self.stream)


def _tensorboard(folder: Path, purge_step: int) -> Any:
    """A TensorBoard writer, or None without the `tensorboard` extra (the run notes that)."""
    if not available("tensorboard"):
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=purge_step or None)
