"""``lorakit train --nproc N``: re-run the same command under torchrun, nothing home-made."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def torchrun_command(nproc: int, lorakit_args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m lorakit ARGS``.

    --standalone runs the rendezvous on this machine on a free port, so several jobs can
    share one machine; multi-node jobs call torchrun themselves (see the README).
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "lorakit",
        *lorakit_args,
    ]


def exec_torchrun(nproc: int, lorakit_args: Sequence[str]) -> None:
    """Replace this process with torchrun (does not return)."""
    cmd = torchrun_command(nproc, lorakit_args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
