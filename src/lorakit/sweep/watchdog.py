"""Run a trial and end its process group when the sweep that started us dies.

Usage: ``python watchdog.py SWEEP_PID POLL_S -- COMMAND...``. Started as a plain script (no
package imports, so it costs a bare interpreter). The sweep puts the watchdog in a session of
its own; the trial inherits that process group, so the sweep's stop() signals both. The
watchdog ignores SIGTERM itself and waits for the trial, so its exit is the trial's exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("usage: watchdog.py SWEEP_PID POLL_S -- COMMAND...", file=sys.stderr)
        return 2
    sweep, poll_s, command = int(argv[1]), float(argv[2]), argv[4:]
    # The sweep's SIGTERM reaches the trial too (same group): wait for the trial's exit instead.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(command, preexec_fn=_default_sigterm)
    while True:
        try:
            code = child.wait(timeout=poll_s)
            break
        except subprocess.TimeoutExpired:
            if os.getppid() != sweep:  # re-parented: the sweep is gone
                os.killpg(os.getpgrp(), signal.SIGKILL)  # the trial, anything it started, and us
    if code < 0:  # mirror a death by signal, so the sweep sees what the trial saw
        if -code != signal.SIGKILL:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
