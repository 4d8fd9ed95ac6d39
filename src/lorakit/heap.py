"""Handing freed heap memory back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from typing import Any


@functools.cache
def _libc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


def trim_heap() -> bool:
    """Return the free pages of glibc's heap to the OS (``malloc_trim(0)``), without a garbage
    collection: cheap enough to call after every optimizer step.

    Training batches of varying length leave the heap fragmented: glibc raises its mmap
    threshold after the first large free, so later activations come from the heap, and freed
    pages between live chunks stay resident. Trimming after each step keeps the resident size
    near what the model, optimizer and one step's activations need. False without glibc.
    """
    trim = _libc_trim()
    return bool(trim(0)) if trim is not None else False


def release_freed_memory() -> bool:
    """Collect garbage and ask glibc to return free heap pages to the OS (``malloc_trim``).

    After ``quantize_model`` the float weights are freed, but glibc keeps most of that memory
    in its arenas, so the process's resident size would not shrink. Returns False where there
    is no glibc (macOS, musl): nothing is trimmed, nothing else changes.
    """
    gc.collect()
    return trim_heap()
