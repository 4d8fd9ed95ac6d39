"""A stand-in for ``lorakit train`` with the same output contract, for testing the sweep machinery.

Called as ``python fake_trainer.py CONFIG key=value ... output_dir=DIR``. The validation accuracy
curve depends on lora.r; train.lr >= 1 diverges (summary status failed), train.lr == 0.5 crashes
without a summary; fake.step_s (or the FAKE_STEP_S environment variable) slows each step down
so the sweep can watch and prune. The process id goes to OUT/pid.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import yaml


def main(argv: list[str]) -> int:
    overrides = dict(a.split("=", 1) for a in argv[2:])
    out = Path(overrides["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "pid").write_text(str(os.getpid()))
    r = int(overrides.get("lora.r", 8))
    lr = float(yaml.safe_load(overrides.get("train.lr", "0.001")))
    steps = int(overrides.get("train.max_steps", 20))
    step_s = float(overrides.get("fake.step_s", os.environ.get("FAKE_STEP_S", "0")))
    eval_every = 5
    quality = min(r, 8) / 8
    (out / "config.yaml").write_text(yaml.safe_dump({"lora": {"r": r}, "train": {"lr": lr}}))
    started = time.time()
    if lr == 0.5:
        print("Traceback (most recent call last):\nRuntimeError: simulated crash", file=sys.stderr)
        return 1
    best, best_step = None, None
    with (out / "metrics.jsonl").open("w") as f:
        for step in range(1, steps + 1):
            time.sleep(step_s)
            loss = float("nan") if lr >= 1 and step >= 3 else 1.0 / (step * quality + 1)
            f.write(json.dumps({"step": step, "split": "train", "loss": loss, "lr": lr}) + "\n")
            f.flush()
            if math.isnan(loss):
                error = f"loss is NaN at step {step}"
                return _summary(out, "failed", best, best_step, step, r, started, error)
            if step % eval_every == 0 or step == steps:
                acc = 0.5 + 0.4 * quality * (1 - math.exp(-step / 10))
                f.write(json.dumps({"step": step, "split": "eval", "accuracy": acc, "loss": 1 - acc}) + "\n")
                f.flush()
                if best is None or acc > best:
                    best, best_step = acc, step
    return _summary(out, "completed", best, best_step, steps, r, started, None)


def _summary(out: Path, status: str, best, best_step, step: int, r: int, started: float, error) -> int:
    trainable = 1000 * r
    summary = {
        "status": status,
        "best_metric": best,
        "metric_for_best": "accuracy",
        "best_step": best_step,
        "final_step": step,
        "trainable_params": trainable,
        "total_params": 100_000,
        "trainable_percent": 100 * trainable / 100_000,
        "wall_time_s": time.time() - started,
        "peak_memory_mb": 1.0,
        "started_at": started,
        "finished_at": time.time(),
    }
    if error:
        summary["error"] = error
    (out / "adapter").mkdir(exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary))
    return 0 if status != "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
