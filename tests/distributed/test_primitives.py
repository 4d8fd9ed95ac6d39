"""DDP reduces only the adapter, FSDP payloads equal unsharded ones, collectives combine ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def torchrun(nproc: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        *args,
    ]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_wrapping_and_collectives_on_two_gloo_ranks() -> None:
    proc = torchrun(2, "-m", "tests.distributed.primitives_worker")
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line.removeprefix("REPORT "))
    assert report["world"] == 2 and report["backend"] == "gloo"
    # Only LoRA + head bytes go through DDP's reducer: the frozen base is never all-reduced.
    assert report["ddp_reduced_bytes"] == report["trainable_bytes"]
    assert report["ddp_payload_same"] and report["fsdp_payload_same"]
    assert report["fsdp_sharded"] and report["shard_like_roundtrip"] and report["optimizer_roundtrip"]
    assert report["sums"] == {"n": 2.0, "r": 1.0}
    assert report["rows"] == [0.0, 1.0, 1.0]
    assert report["reduced_rows"] == [1.0, 2.0, 0.0]
    assert report["flag"] is True
