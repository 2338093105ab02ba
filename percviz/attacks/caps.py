"""Parameter caps: the loop counts and cost parameters an attack declares in the registry, checked
against :func:`percviz.limits.current_limits` (or given limits) before any attack runs. The attack
templates call :func:`enforce`; the pages and workflows call :func:`check_params` to refuse a value
before queueing it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from percviz.errors import ModelUnavailableError, ParameterError, UnknownIdError
from percviz.limits import COST_LIMITS, Limits, current_limits

if TYPE_CHECKING:
    from percviz.attacks.base import AttackSpec


def check_params(attack: AttackSpec | str, values: Mapping[str, Any], limits: Limits | None = None) -> None:
    """Refuse loop counts and cost parameters above the caps, and runs that can only fail.

    The parameters ``attack`` declares (:attr:`AttackSpec.iteration_params`,
    :attr:`AttackSpec.cost_params`) are compared with their cap whatever their type (``1000.0``,
    ``"1e23"`` and ``inf`` alike; a list, as a sweep sends, value by value), and an external
    ``distance_net`` must have its weights on this machine (``limits``: default this process's).
    Raises :class:`ParameterError` (or :class:`ModelUnavailableError`) with one sentence.
    """
    from percviz.attacks import get_attack

    spec = get_attack(attack) if isinstance(attack, str) else attack
    _check_caps(spec, values, limits or current_limits())
    if "distance_net" in spec.param_names():
        _check_distance_net(values.get("distance_net"), limits or current_limits())


def check_any_params(values: Mapping[str, Any], limits: Limits | None = None) -> None:
    """:func:`check_params` for values not yet tied to an attack: every loop and cost name that any
    registered attack declares is compared with its cap."""
    _check_caps(None, values, limits or current_limits())


def _check_caps(spec: AttackSpec | None, params: Mapping[str, Any], limits: Limits) -> None:
    iteration, cost = declared_loop_params(spec)
    for name in sorted(iteration | cost):
        field = "max_steps" if name in iteration else COST_LIMITS.get(name, "max_cost")
        for value in _each(params.get(name)):
            _check_cap(name, value, getattr(limits, field), limits)


def declared_loop_params(spec: AttackSpec | None = None) -> tuple[set[str], set[str]]:
    """The iteration and cost parameter names :func:`check_params` caps: what ``spec`` declares
    in the registry, or (no spec) what any registered attack declares."""
    from percviz.attacks import registry

    specs = [spec] if spec is not None else list(registry().values())
    iteration = {n for s in specs for n in s.iteration_params}
    cost = {n for s in specs for n in s.cost_params} - iteration
    return iteration, cost


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


def enforce(spec: AttackSpec, values: Mapping[str, Any], limits: Limits | None = None) -> None:
    """:func:`check_params` against ``limits`` (default: this process's, local or hosted) for a run
    about to start: the attack templates call it, so a value reaches no attack unchecked whichever
    page, script or recipe sent it (local caps: ``max_steps`` 1000, ``max_cost`` 100,000…). Locally
    only the loop and cost caps apply here: a missing distance network is the loader's to report."""
    limits = limits or current_limits()
    if limits.hosted:
        check_params(spec, values, limits)
    else:
        check_params(spec, {k: v for k, v in values.items() if k != "distance_net"}, limits)
