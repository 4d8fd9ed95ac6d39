"""Handing freed heap memory back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_freed_memory() -> bool:
    """Collect garbage and ask glibc to return free heap pages to the OS (``malloc_trim``).

    After ``quantize_model`` the float weights are freed, but glibc keeps most of that memory
    in its arenas, so the process's resident size would not shrink. Returns False where there
    is no glibc (macOS, musl): nothing is trimmed, nothing else changes.
    """
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return False
    return bool(trim(0))
