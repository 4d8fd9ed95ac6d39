"""One trial as a child process of ``python -m lorakit train``.

A subprocess isolates trials from each other (memory, global RNG and thread state, a crash)
and lets the sweep stop a trial the pruner rejects at any time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import lorakit
from lorakit.sweep.orphans import OrphanGuard, default_guard

TRAIN_LOG = "train.log"


def default_train_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "lorakit", "train")


@dataclass
class TrialProcess:
    """A running trial: the child process and the log it writes to."""

    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    out_dir: Path
    started: float

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self, grace_s: float = 10.0) -> None:
        """Terminate the trial (and anything it started), killing it if it ignores SIGTERM."""
        if self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc, signal.SIGKILL)
                self.proc.wait()
        self.close()

    def close(self) -> None:
        if not self.log.closed:
            self.log.close()


def launch(
    command: Sequence[str],
    config: Path,
    overrides: Sequence[str],
    out_dir: Path,
    threads: int | None,
    guard: OrphanGuard | None = None,
) -> TrialProcess:
    """Start ``command CONFIG overrides... output_dir=OUT``; stdout and stderr go to OUT/train.log.

    The trial ends when the sweep process dies, however it dies (see ``orphans``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    guard = guard if guard is not None else default_guard()
    argv = [*command, str(config), *overrides, f"output_dir={out_dir}"]
    log = (out_dir / TRAIN_LOG).open("ab")
    log.write(("$ " + " ".join(argv) + "\n").encode())
    log.flush()
    proc = subprocess.Popen(
        guard.command(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=child_env(threads),
        # Own process group: Ctrl-C reaches the sweep only, which then stops its trials in order.
        start_new_session=True,
        preexec_fn=guard.preexec(),
    )
    return TrialProcess(proc=proc, log=log, out_dir=out_dir, started=time.monotonic())


def child_env(threads: int | None) -> dict[str, str]:
    """The sweep's environment, made to import this same lorakit, with a CPU thread share."""
    env = dict(os.environ)
    src = str(Path(lorakit.__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([src, *[p for p in paths if p != src]])
    if threads is not None:
        # Parallel trials share the cores; without this each would start one thread per core.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, str(threads))
    return env


def log_tail(out_dir: Path, lines: int = 5) -> str:
    """The last non-empty lines of a trial's log, to explain a crash."""
    try:
        text = (out_dir / TRAIN_LOG).read_text(errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("$ ")]
    # Progress bars redraw with carriage returns; keep only the last frame of each line.
    kept = [ln.split("\r")[-1] for ln in kept]
    return " | ".join(kept[-lines:])


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
