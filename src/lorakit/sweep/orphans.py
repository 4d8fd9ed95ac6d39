"""Trials die with the sweep: no trial keeps running when the sweep process is killed.

A trial runs in its own session (so Ctrl-C in the terminal reaches only the sweep, which then
stops its trials in order). The flip side: a sweep killed with SIGKILL cannot stop anything, and
its trials would run on as orphans. Two guards prevent that:

* ``ParentDeathSignal`` (Linux): the trial asks the kernel, via prctl(PR_SET_PDEATHSIG), for
  SIGKILL when its parent dies. No extra process. (The kernel ties this to the *thread* that
  started the trial; the sweep starts trials from its main thread.)
* ``Watchdog`` (elsewhere): a small process between sweep and trial polls for the sweep and kills
  the trial's process group when the sweep is gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

_PR_SET_PDEATHSIG = 1
WATCHDOG_SCRIPT = Path(__file__).with_name("watchdog.py")


class OrphanGuard(Protocol):
    """How a trial process is made to end when the sweep that started it dies."""

    def command(self, argv: Sequence[str]) -> list[str]:
        """The command line to start (the trial's, possibly wrapped)."""
        ...

    def preexec(self) -> Callable[[], None] | None:
        """What the child runs between fork and exec (None: nothing)."""
        ...


class ParentDeathSignal:
    """Linux: the kernel sends the trial SIGKILL when the sweep dies."""

    def __init__(self) -> None:
        # Loaded before fork: the child only calls a function that is already resolved.
        self._prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl

    def command(self, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def preexec(self) -> Callable[[], None]:
        parent, prctl = os.getpid(), self._prctl

        def die_with_parent() -> None:
            if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                os._exit(126)  # never run a trial that could outlive the sweep
            if os.getppid() != parent:  # the sweep died between fork and prctl
                os._exit(126)

        return die_with_parent


class Watchdog:
    """Anywhere: the trial runs under a watchdog process that ends it when the sweep is gone."""

    def __init__(self, poll_s: float = 0.5) -> None:
        self.poll_s = poll_s

    def command(self, argv: Sequence[str]) -> list[str]:
        return [sys.executable, str(WATCHDOG_SCRIPT), str(os.getpid()), str(self.poll_s), "--", *argv]

    def preexec(self) -> None:
        return None


def default_guard() -> OrphanGuard:
    """The parent-death signal on Linux, the watchdog process elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            return ParentDeathSignal()
        except (OSError, AttributeError):
            pass  # no usable libc: fall back
    return Watchdog()
