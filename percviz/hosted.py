"""Limits for a shared lab server (SPEC §9): one setting, ``PERCVIZ_HOSTED=1``, turns them on.

Local use keeps generous limits; hosted mode caps upload size and pixels, image side, iteration
counts, batch and sweep sizes, and disables server folders and custom models. Every cap can be
tuned by an environment variable (``PERCVIZ_MAX_STEPS=…``), read once per call of
:func:`current_limits` so tests can change it. :func:`start_memory_release` keeps a long-running
server's memory from ratcheting up as sessions come and go (glibc arenas capped, freed pages trimmed).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from percviz.errors import ParameterError

ITERATION_PARAMS = ("steps", "search_steps", "cg_iters", "bisect_iters", "subsets")
RELEASE_INTERVAL_S = 10.0
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter number


@dataclass(frozen=True)
class Limits:
    """Caps applied by the app (and the CLI where they make sense)."""

    hosted: bool
    max_upload_mb: int
    max_pixels: int
    max_side: int
    max_steps: int
    max_batch: int
    max_sweep_cells: int
    max_images: int
    compute_slots: int
    jobs_per_session: int
    allow_server_folders: bool
    allow_custom_models: bool


LOCAL = Limits(
    hosted=False,
    max_upload_mb=25,
    max_pixels=40_000_000,
    max_side=12_000,
    max_steps=1000,
    max_batch=64,
    max_sweep_cells=400,
    max_images=500,
    compute_slots=1,
    jobs_per_session=2,
    allow_server_folders=True,
    allow_custom_models=False,
)

HOSTED = Limits(
    hosted=True,
    max_upload_mb=5,
    max_pixels=16_000_000,
    max_side=6_000,
    max_steps=200,
    max_batch=8,
    max_sweep_cells=36,
    max_images=16,
    compute_slots=1,
    jobs_per_session=1,
    allow_server_folders=False,
    allow_custom_models=False,
)


def hosted_mode() -> bool:
    return os.environ.get("PERCVIZ_HOSTED", "").strip().lower() in ("1", "true", "yes", "on")


def current_limits() -> Limits:
    """The limits in force: hosted or local defaults, each overridable by ``PERCVIZ_<FIELD>``."""
    base = HOSTED if hosted_mode() else LOCAL
    changes: dict[str, Any] = {}
    for f in fields(Limits):
        raw = os.environ.get(f"PERCVIZ_{f.name.upper()}")
        if raw is None or f.name == "hosted":
            continue
        if f.type in ("bool", bool):
            changes[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            try:
                changes[f.name] = max(1, int(raw))
            except ValueError:
                raise ParameterError(f"PERCVIZ_{f.name.upper()} must be an integer; got {raw!r}.") from None
    return Limits(**{**base.__dict__, **changes})


def check_params(values: Mapping[str, Any], limits: Limits) -> None:
    """Refuse iteration counts above the cap with a sentence naming the parameter and the cap."""
    for name in ITERATION_PARAMS:
        value = values.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > limits.max_steps:
            mode = "Hosted mode" if limits.hosted else "This server"
            raise ParameterError(f"{mode} allows at most {limits.max_steps} for '{name}'; got {value}.")


def check_image_size(height: int, width: int, limits: Limits) -> None:
    """Refuse images with a side or pixel count above the caps."""
    if max(height, width) > limits.max_side:
        raise ParameterError(
            f"Images may be at most {limits.max_side} pixels on a side; got {width}×{height}."
        )
    if height * width > limits.max_pixels:
        raise ParameterError(
            f"Images may have at most {limits.max_pixels / 1e6:.0f} Mpx; got {height * width / 1e6:.1f} Mpx."
        )


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
