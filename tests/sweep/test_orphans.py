"""A sweep killed with SIGKILL leaves no trial process running, and its trials run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lorakit.sweep.workers import pid_alive

HERE = Path(__file__).parent
SRC = str(HERE.parents[1] / "src")


def worker(tmp_path: Path, guard: str, args: list[str]) -> list[str]:
    go, ready = str(tmp_path / "go"), str(tmp_path / "ready")
    return [sys.executable, str(HERE / "sweep_worker.py"), go, ready, guard, "--", *args]


def wait_for(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("guard", ["auto", "watchdog"])
def test_sigkill_of_the_sweep_ends_its_trial(tiny_config: Path, tmp_path: Path, guard: str) -> None:
    out, journal = tmp_path / "sweep", tmp_path / "s.journal"
    args = [str(tiny_config), "--grid", "lora.r=2,4", "--out", str(out)]
    if guard == "auto":
        args += ["--storage", str(journal)]
    (tmp_path / "go").touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(HERE)]), "FAKE_STEP_S": "1"}
    sweep = subprocess.Popen(
        worker(tmp_path, guard, args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    pid_file = out / "trials" / "trial-001" / "pid"
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), 120, "the first trial to start")
        trial = int(pid_file.read_text())
        assert pid_alive(trial)
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    wait_for(lambda: not pid_alive(trial), 5, f"trial process {trial} to end after the sweep was killed")

    if guard != "auto":
        return
    # The trial of the killed worker (same machine, process gone) is run again at once by the next.
    env["FAKE_STEP_S"] = "0"
    rerun = subprocess.run(
        worker(tmp_path, "auto", args),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "[trial 1/2] will run again: its worker (pid " in rerun.stdout
    assert "[trial 1/2] start  lora.r=2 (attempt 2)" in rerun.stdout
    assert (out / "sweep.csv").read_text().count(",completed,") == 2
