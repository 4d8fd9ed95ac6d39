"""A run killed with SIGKILL mid-training resumes to a byte-identical final adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lorakit.cli import main
from tiny_assets import write_run

SRC = Path(__file__).resolve().parents[2] / "src"
RUN = {"max_steps": 160, "save_every": 5, "eval_every": 40, "lr": 1e-2}


def _adapter_bytes(run: Path) -> dict[str, bytes]:
    return {
        n: (run / "adapter" / n).read_bytes() for n in ("adapter_model.safetensors", "adapter_config.json")
    }


def test_sigkill_then_resume_is_byte_identical(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    ref_cfg = write_run(tmp_path / "ref", "classification", tiny_dirs["bert"], **RUN)
    assert main(["train", str(ref_cfg)]) == 0

    cfg = write_run(tmp_path / "killed", "classification", tiny_dirs["bert"], **RUN)
    run = tmp_path / "killed" / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lorakit", "train", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list((run / "checkpoints").glob("step-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists(), "the run finished before the kill; nothing was tested"

    assert main(["train", str(cfg), "--resume"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] is not None and summary["final_step"] == RUN["max_steps"]
    assert _adapter_bytes(run) == _adapter_bytes(tmp_path / "ref" / "run")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [
        s
        for s, line in zip(steps, (run / "metrics.jsonl").read_text().splitlines(), strict=True)
        if '"train"' in line
    ]
    assert train_steps == sorted(set(train_steps)), "metrics.jsonl has duplicated steps after resume"


def test_resume_auto_without_checkpoint_starts_fresh(tmp_path: Path, tiny_dirs: dict[str, Path]) -> None:
    cfg = write_run(tmp_path, "classification", tiny_dirs["bert"], max_steps=3, save_every=None)
    assert main(["train", str(cfg), "resume=auto"]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["resumed_from"] is None
