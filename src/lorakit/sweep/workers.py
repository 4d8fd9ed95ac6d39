"""Who runs a shared trial, and whether that worker is still there."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Worker:
    """One sweep process, as recorded on the trials it runs."""

    id: str
    """host:pid:random, unique across machines and restarts."""
    machine: str | None
    """Identifies this machine, boot and process namespace (Linux), so a worker on the same
    machine can tell from the process table that another has exited; None where unknown."""
    pid: int

    @classmethod
    def this_process(cls) -> Worker:
        pid = os.getpid()
        return cls(f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}", machine_id(), pid)

    def as_attr(self) -> dict[str, Any]:
        return {"id": self.id, "machine": self.machine, "pid": self.pid}

    def gone(self, owner: dict[str, Any]) -> bool:
        """Whether the worker ``owner`` (an ``as_attr`` dict) ran on this machine and has exited.
        False when that cannot be known (another machine): heartbeats decide then."""
        if self.machine is None or owner.get("machine") != self.machine or owner.get("id") == self.id:
            return False
        pid = owner.get("pid")
        return isinstance(pid, int) and not pid_alive(pid)


def machine_id() -> str | None:
    """hostname / boot id / pid namespace on Linux: equal only where pids mean the same process."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{pid_ns}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: existence is all we know
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
