"""trim_heap hands freed heap pages back to the OS: the resident size drops after a fragmented
heap is trimmed (Linux with glibc only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lorakit.heap import trim_heap


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_trim_returns_fragmented_heap_pages() -> None:
    # 64 KiB tensors stay below glibc's mmap threshold, so they live on the heap; keeping every
    # 16th alive leaves the freed ones as holes that the top-of-heap trim cannot release.
    chunks = [torch.ones(16 * 1024) for _ in range(3200)]  # ~200 MB touched
    kept = chunks[::16]
    del chunks
    before = _rss_mb()
    if not trim_heap():
        pytest.skip("no glibc malloc_trim here")
    after = _rss_mb()
    assert before - after > 100, (before, after)
    assert float(sum(t.sum() for t in kept)) == 16 * 1024 * len(kept)  # the live data is intact
