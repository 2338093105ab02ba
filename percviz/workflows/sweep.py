"""The Sweep page's plans and jobs: a parameter grid on one image and curves over an image set.

:func:`plan_grid` and :func:`plan_curve` check a request against this server's limits (the number
of runs, every swept and fixed value's cap, every value against the schema) before anything is
queued; the job bodies plan again when they start, so no queued sweep runs unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from percviz import evaluation as ev
from percviz.attacks.base import get_attack
from percviz.attacks.caps import check_params
from percviz.errors import ParameterError
from percviz.limits import Limits, check_batch, current_limits
from percviz.models import Classifier
from percviz.progress import ProgressCallback, part_progress


def check_sweep(
    attack: str, params: Mapping[str, Any], swept: Mapping[str, Sequence[float]], limits: Limits | None = None
) -> None:
    """Every value a sweep sends to ``attack`` passes this server's caps, as a single run would.

    ``swept`` maps each swept parameter to its values (a float such as ``1000.0`` for ``steps``
    counts like the integer); raises :class:`percviz.errors.ParameterError` naming the first
    value above a cap (:func:`percviz.attacks.caps.check_params`, which reads the registry's
    iteration and cost parameters).
    """
    values = {**dict(params), **{name: list(v) for name, v in swept.items()}}
    check_params(get_attack(attack), values, limits or current_limits())


def check_sweep_size(count: int, limits: Limits, what: str) -> None:
    """A sweep of ``count`` attack runs (grid ``cells`` or curve ``runs``) within this server's limit."""
    if count > limits.max_sweep_cells:
        raise ParameterError(f"At most {limits.max_sweep_cells} {what}; got {count}.")


@dataclass(frozen=True)
class GridPlan:
    """A checked grid: ``rows``/``cols`` are ``(parameter, values)``; ``fixed`` the other parameters."""

    attack: str
    rows: tuple[str, list[float]]
    cols: tuple[str, list[float]]
    fixed: dict[str, Any]

    @property
    def cells(self) -> int:
        return len(self.rows[1]) * len(self.cols[1])


def plan_grid(
    attack: str,
    params: Mapping[str, Any],
    rows: tuple[str, Sequence[float]],
    cols: tuple[str, Sequence[float]],
    limits: Limits | None = None,
) -> GridPlan:
    """Check a grid of ``attack`` over two parameters: the number of cells, every value's cap, and
    every cell's parameters against the schema (:class:`ParameterError` names the first refusal)."""
    limits = limits or current_limits()
    if rows[0] == cols[0]:
        raise ParameterError(f"Rows and columns sweep the same parameter '{rows[0]}'; pick two.")
    plan = GridPlan(
        attack,
        (rows[0], [float(v) for v in rows[1]]),
        (cols[0], [float(v) for v in cols[1]]),
        {k: v for k, v in params.items() if k not in (rows[0], cols[0])},
    )
    check_sweep_size(plan.cells, limits, "cells")
    check_sweep(attack, params, dict([plan.rows, plan.cols]), limits)
    spec = get_attack(attack)
    for rv in plan.rows[1]:
        for cv in plan.cols[1]:
            spec.validate({**params, rows[0]: rv, cols[0]: cv})
    return plan


@dataclass(frozen=True)
class CurvePlan:
    """A checked set of curves: each attack with its fixed parameters, swept over ``param``."""

    attacks: list[tuple[str, dict[str, Any]]]
    param: str
    values: list[float]
    batch: int


def plan_curve(
    attacks: Sequence[tuple[str, Mapping[str, Any]]],
    param: str,
    values: Sequence[float],
    batch: int,
    limits: Limits | None = None,
) -> CurvePlan:
    """Check curves of ``attacks`` over ``param``: the number of runs, the batch, every value's cap,
    every run's parameters against the schema (:class:`ParameterError` names the first refusal)."""
    limits = limits or current_limits()
    if not attacks or not values:
        raise ParameterError("A curve needs at least one attack and one value.")
    check_sweep_size(len(values) * len(attacks), limits, "runs")
    check_batch(batch, limits)
    for attack, params in attacks:
        check_sweep(attack, params, {param: list(values)}, limits)
    for attack, params in attacks:
        spec = get_attack(attack)
        for v in values:
            spec.validate({**params, param: v})
    return CurvePlan(
        [(a, {k: v for k, v in p.items() if k != param}) for a, p in attacks],
        param,
        [float(v) for v in values],
        int(batch),
    )


def grid_work(
    model: Classifier,
    pixels: np.ndarray,
    attack: str,
    rows: tuple[str, list[float]],
    cols: tuple[str, list[float]],
    params: Mapping[str, Any],
    seed: int,
    limits: Limits | None = None,
) -> Callable[[ProgressCallback], ev.GridSweep]:
    """The grid's job body; it plans (:func:`plan_grid`) when it starts, before the first cell."""

    def work(progress: ProgressCallback) -> ev.GridSweep:
        plan = plan_grid(attack, params, rows, cols, limits)
        total = plan.cells
        state = {"done": 0}

        def inner(record: dict[str, Any]) -> bool | None:
            if record.get("stage") == "cell":
                state["done"] = int(record["done"])
            sub = (
                float(record.get("iteration", 0)) / float(record.get("total") or 1)
                if record.get("stage") == "iteration"
                else 0.0
            )
            return progress(
                {
                    **record,
                    "fraction": (state["done"] + sub) / total,
                    "message": f"cell {min(state['done'] + 1, total)} of {total}",
                }
            )

        return ev.grid_sweep(
            model,
            pixels,
            attack,
            plan.rows,
            plan.cols,
            params=plan.fixed,
            seed=seed,
            thumbnail=112,
            progress=inner,
        )

    return work


def curve_work(
    model: Classifier,
    images: list[ev.EvalImage],
    attacks: Sequence[tuple[str, Mapping[str, Any]]],
    param: str,
    values: list[float],
    seed: int,
    batch: int,
    limits: Limits | None = None,
) -> Callable[[ProgressCallback], list[ev.CurveSweep]]:
    """The curves' job body; it plans (:func:`plan_curve`) when it starts, before the first run."""

    def work(progress: ProgressCallback) -> list[ev.CurveSweep]:
        plan = plan_curve(attacks, param, values, batch, limits)
        out = []
        for i, (attack, fixed) in enumerate(plan.attacks):
            out.append(
                ev.curve_sweep(
                    model,
                    images,
                    attack,
                    plan.param,
                    plan.values,
                    params=fixed,
                    seed=seed,
                    batch=plan.batch,
                    progress=part_progress(progress, i, len(plan.attacks), attack),
                )
            )
            if out[-1].evaluation.cancelled:
                break
        return out

    return work
