"""A long-running server's memory housekeeping: glibc's malloc arenas capped and freed pages handed
back to the OS, so RSS falls back after a burst of sessions instead of ratcheting up."""

from __future__ import annotations

import ctypes
import threading
import time

RELEASE_INTERVAL_S = 10.0
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter number


def release_free_memory() -> bool:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``); False where unavailable.

    Python and PyTorch free memory into glibc's arenas, which keep it: after a burst of sessions
    the server's RSS stays near its peak although nothing is live any more.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas, as ``MALLOC_ARENA_MAX`` would; False where unavailable.

    Every Streamlit rerun and every job runs in a new thread, glibc hands threads up to eight arenas
    per core, and memory freed into one arena is not reused by the others, so RSS ratchets up after
    bursts of sessions. Applies to arenas created after the call.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


def start_memory_release(interval_s: float = RELEASE_INTERVAL_S) -> threading.Thread:
    """Cap the malloc arenas and start a daemon thread calling :func:`release_free_memory` every
    ``interval_s`` seconds (hosted mode: sessions come and go)."""
    limit_malloc_arenas()

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            release_free_memory()

    thread = threading.Thread(target=loop, name="percviz-memory-release", daemon=True)
    thread.start()
    return thread
