"""The limits in force: local defaults, or the caps of a shared lab server (``PERCVIZ_HOSTED=1``).

Local use keeps generous limits; hosted mode caps upload size and pixels, image side, iteration
counts and the parameters that multiply a step's cost (candidate classes…), batch and sweep sizes,
a job's wall time, and disables server folders and custom models. Every cap can be tuned by an
environment variable (``PERCVIZ_MAX_STEPS=…``), read once per call of :func:`current_limits` so tests
can change it. The core reads them here; the attack templates check parameters against them with
:mod:`percviz.attacks.caps`. This module imports nothing of percviz above :mod:`percviz.errors`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from percviz.errors import ParameterError

#: Which :class:`Limits` field caps a cost parameter; any other cost parameter gets ``max_cost``.
COST_LIMITS = {"candidates": "max_candidates"}


@dataclass(frozen=True)
class Limits:
    """Caps applied by the app (and the CLI where they make sense).

    ``max_steps`` caps every iteration count, ``max_candidates`` the candidate classes of
    per-class methods (and quadratic-ℓ1's measured Jacobian columns), ``max_cost`` any other parameter an attack declares as multiplying its
    cost; ``job_time_limit_s`` stops a queued job after that many seconds of running (0 = none).
    """

    hosted: bool
    max_upload_mb: int
    max_pixels: int
    max_side: int
    max_steps: int
    max_candidates: int
    max_cost: int
    job_time_limit_s: int
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
    max_candidates=100_000,  # classes stop at 999 (schema); reg_quad may measure all 49,152 columns at 128²
    max_cost=100_000,
    job_time_limit_s=0,
    max_batch=64,
    max_sweep_cells=400,
    max_images=500,
    compute_slots=1,
    jobs_per_session=2,
    allow_server_folders=True,
    allow_custom_models=True,
)

HOSTED = Limits(
    hosted=True,
    max_upload_mb=5,
    max_pixels=16_000_000,
    max_side=6_000,
    max_steps=200,
    max_candidates=20,
    max_cost=64,
    job_time_limit_s=300,
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


def check_batch(batch: int, limits: Limits) -> None:
    """Images per pass: at least 1, at most ``limits.max_batch`` (:class:`ParameterError`)."""
    if not 1 <= batch <= limits.max_batch:
        raise ParameterError(f"The batch must lie in [1, {limits.max_batch}]; got {batch}.")


def command_line_limits() -> Limits:
    """The limits of ``percviz evaluate``: :func:`current_limits` with the image count and the batch
    left to the user (the command streams its rows to disk as they finish, where the app keeps them
    in memory); the loop and cost caps of every attack stay."""
    return replace(current_limits(), max_images=2**31 - 1, max_batch=2**31 - 1)
