"""Limits for a shared lab server: one setting, ``PERCVIZ_HOSTED=1``, turns them on.

Local use keeps generous limits; hosted mode caps upload size and pixels, image side, iteration
counts and the parameters that multiply a step's cost (candidate classes…), batch and sweep sizes,
a job's wall time, and disables server folders and custom models. Every cap can be
tuned by an environment variable (``PERCVIZ_MAX_STEPS=…``), read once per call of
:func:`current_limits` so tests can change it. :func:`start_memory_release` keeps a long-running
server's memory from ratcheting up as sessions come and go (glibc arenas capped, freed pages trimmed).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from percviz.errors import ModelUnavailableError, ParameterError, UnknownIdError

if TYPE_CHECKING:
    from percviz.attacks.base import AttackSpec

#: Which :class:`Limits` field caps a cost parameter; any other cost parameter gets ``max_cost``.
COST_LIMITS = {"candidates": "max_candidates"}
RELEASE_INTERVAL_S = 10.0
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter number


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


def check_params(
    attack: AttackSpec | str | Mapping[str, Any],
    values: Mapping[str, Any] | Limits | None = None,
    limits: Limits | None = None,
) -> None:
    """Refuse loop counts and cost parameters above the caps, and runs that can only fail.

    ``check_params(spec_or_id, values, limits)``: the parameters the attack declares
    (:attr:`AttackSpec.iteration_params`, :attr:`AttackSpec.cost_params`) plus the usual names
    are compared with their cap whatever their type (``1000.0``, ``"1e23"`` and ``inf`` alike; a
    list, as a sweep sends, value by value), and an external ``distance_net`` must have its
    weights on this machine. ``check_params(values, limits)`` checks every name any registered
    attack declares.
    Raises :class:`ParameterError` (or :class:`ModelUnavailableError`) with one sentence.
    """
    given: object = values
    if isinstance(values, Limits):
        spec, given, limits = None, attack, values
    else:
        spec = _spec(attack)
    if limits is None:
        limits = current_limits()
    params: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    iteration, cost = declared_loop_params(spec)
    for name in sorted(iteration | cost):
        field = "max_steps" if name in iteration else COST_LIMITS.get(name, "max_cost")
        for value in _each(params.get(name)):
            _check_cap(name, value, getattr(limits, field), limits)
    if spec is not None and "distance_net" in spec.param_names():
        _check_distance_net(params.get("distance_net"), limits)


def declared_loop_params(spec: AttackSpec | None = None) -> tuple[set[str], set[str]]:
    """The iteration and cost parameter names :func:`check_params` caps: what ``spec`` declares
    in the registry, or (no spec) what any registered attack declares."""
    from percviz.attacks import registry

    specs = [spec] if spec is not None else list(registry().values())
    iteration = {n for s in specs for n in s.iteration_params}
    cost = {n for s in specs for n in s.cost_params} - iteration
    return iteration, cost


def _spec(attack: AttackSpec | str | Mapping[str, Any]) -> AttackSpec | None:
    from percviz.attacks import get_attack

    if isinstance(attack, str):
        return get_attack(attack)
    return None if isinstance(attack, Mapping) else attack


def _each(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _check_cap(name: str, value: Any, cap: int, limits: Limits) -> None:
    if isinstance(value, bool):
        return
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return  # not a number: the schema refuses it with its own sentence
    mode = "Hosted mode" if limits.hosted else "This server"
    if math.isnan(number):
        raise ParameterError(f"Parameter '{name}' must be a number; got {value!r}.")
    if number > cap:
        raise ParameterError(f"{mode} allows at most {cap} for '{name}'; got {value!r}.")


def _check_distance_net(name: Any, limits: Limits) -> None:
    """A perceptual bound measured by a zoo model whose weights are missing can only fail."""
    if not isinstance(name, str) or name in ("", "self"):
        return
    from percviz.models import model_status

    try:
        status = model_status(name)
    except UnknownIdError:  # the schema names the valid ones
        return
    if status.available:
        return
    where = "on this server" if limits.hosted else "here"
    hint = "" if limits.hosted else f"; {status.how_to_enable}"
    raise ModelUnavailableError(
        f"distance_net={name} needs the {status.spec.title} weights, which are not installed {where}{hint}."
    )


def enforce(spec: AttackSpec, values: Mapping[str, Any]) -> None:
    """:func:`check_params` against this process's limits (local or hosted) for a run about to
    start: the attack templates call it, so a value reaches no attack unchecked whichever page,
    script or recipe sent it (local caps: ``max_steps`` 1000, ``max_cost`` 100,000…). Locally only
    the loop and cost caps apply here: a missing distance network is the loader's to report."""
    limits = current_limits()
    if limits.hosted:
        check_params(spec, values, limits)
    else:
        check_params(spec, {k: v for k, v in values.items() if k != "distance_net"}, limits)


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
