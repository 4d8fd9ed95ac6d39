"""One ``lorakit sweep`` worker process for tests: the CLI's options and report, the fake trainer.

Called as ``python sweep_worker.py GO READY GUARD -- SWEEP_ARGS...``: parses SWEEP_ARGS as
``lorakit sweep`` does, touches READY, waits for the file GO (so several workers start at the
same moment), then runs its share of the sweep with fake_trainer.py. GUARD is ``auto`` or
``watchdog`` (how trials die with this process).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from lorakit.cli import build_parser
from lorakit.sweep.command import options_from_args, run_options
from lorakit.sweep.orphans import Watchdog

FAKE = (sys.executable, str(Path(__file__).with_name("fake_trainer.py")))


def main(argv: list[str]) -> int:
    go, ready, guard = Path(argv[1]), Path(argv[2]), argv[3]
    assert argv[4] == "--"
    opts = options_from_args(build_parser().parse_args(["sweep", *argv[5:]]))
    opts = replace(
        opts,
        train_command=FAKE,
        poll_s=0.05,
        orphan_guard=Watchdog(poll_s=0.1) if guard == "watchdog" else None,
    )
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    return run_options(opts)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
