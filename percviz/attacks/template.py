"""The steps every attack run shares, classification (:func:`percviz.attacks.base.run_attack`) and
regression (:func:`percviz.attacks.regression_run.run_regression_attack`) alike.

:func:`start_run` checks the attack's task and the model, validates the parameters against the
schema, enforces the caps of the given (or this process's) limits, checks the input batch, seeds
the randomness and starts the clock; :func:`execute_run` calls the attack function (a cancel inside
a step keeps the original), clips to [0, 1] and refuses non-finite output; :func:`stop_clock` ends
the timed part; :func:`judge_run` re-measures every constraint against the original image and says,
per image, whether every hard bound holds. Each template adds only what its task differs in: labels,
target and fooling for classifiers; the reference output and output metrics for regressors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from percviz.attacks.base import (
    AttackCancelled,
    AttackContext,
    AttackOutput,
    AttackSpec,
    ProgressCallback,
    get_attack,
    validate_batch,
)
from percviz.attacks.bounds import judge_bounds
from percviz.attacks.caps import enforce
from percviz.attacks.schema import ParamValue
from percviz.errors import ParameterError
from percviz.limits import Limits

Task = Literal["classification", "regression"]

_OTHER_TEMPLATE = {
    "classification": "attacks regression models; run it with "
    "percviz.attacks.regression_run.run_regression_attack on a regressor.",
    "regression": "attacks classifiers; run it with run_attack.",
}


@dataclass
class StartedRun:
    """A run past its checks: the spec, validated values, context (passes, progress, frames), the
    original batch ``x0`` (``N×3×H×W`` float32 on the model's device) and the clock's start."""

    attack_id: str
    spec: AttackSpec
    values: dict[str, ParamValue]
    ctx: AttackContext
    x0: torch.Tensor
    start: float


def start_run(
    attack_id: str,
    task: Task,
    model: torch.nn.Module,
    x: torch.Tensor,
    params: Mapping[str, Any] | None,
    *,
    seed: int,
    progress: ProgressCallback | None,
    frames: int = 0,
    limits: Limits | None = None,
    check_model: Callable[[torch.nn.Module], None] | None = None,
) -> StartedRun:
    """Every check before an attack runs (:class:`ParameterError` with one sentence), then the
    context, a float32 copy of ``x`` on the model's device (the input is never modified) and the clock."""
    spec = get_attack(attack_id)
    if spec.task != task:
        raise ParameterError(f"Attack '{attack_id}' {_OTHER_TEMPLATE[task]}")
    if check_model is not None:
        check_model(model)
    values = spec.validate(params)
    enforce(spec, values, limits)
    validate_batch(x)
    ctx = AttackContext(model, seed, progress, frames)
    x0 = x.detach().to(ctx.device, torch.float32).clone()
    if ctx.recorder is not None:
        ctx.recorder.keep(0, x0)
    return StartedRun(attack_id, spec, values, ctx, x0, time.perf_counter())


def execute_run(run: StartedRun, reference: torch.Tensor) -> tuple[AttackOutput, torch.Tensor]:
    """The attack function on a copy of ``x0`` with ``reference`` (labels, or the reference output
    ``f(x)``); returns its output and ``x_adv`` clipped to [0, 1]. A cancel inside a step keeps
    the original image (nothing half-computed is returned)."""
    try:
        output = run.spec.fn(run.ctx, run.x0.clone(), reference, run.values)
    except AttackCancelled:
        output = AttackOutput(run.x0.clone(), info={"cancelled_inside_step": True})
    x_adv = output.x_adv.detach().clamp(0.0, 1.0)
    if not torch.isfinite(x_adv).all():
        raise RuntimeError(f"Attack '{run.attack_id}' produced non-finite values.")
    return output, x_adv


def stop_clock(run: StartedRun) -> float:
    """Seconds since :func:`start_run` (after the device finished its queued work)."""
    if run.ctx.device.type == "cuda":
        torch.cuda.synchronize(run.ctx.device)
    return time.perf_counter() - run.start


def judge_run(
    run: StartedRun,
    model: torch.nn.Module,
    x_adv: torch.Tensor,
    output: AttackOutput,
    measured: dict[str, list[float]],
) -> tuple[dict[str, list[float]], list[dict[str, Any]], torch.Tensor]:
    """``measured`` (the template's own re-measurement of ``x_adv`` against ``x0``) plus what the
    attack measured itself → (constraints, bound checks, per-image bool: every hard bound holds)."""
    constraints = dict(measured)
    constraints.update({k: v.detach().double().cpu().tolist() for k, v in output.constraints.items()})
    bounds = judge_bounds(run.spec, run.values, model, run.x0, x_adv, constraints, run.ctx.memo)
    within = torch.ones(run.x0.shape[0], dtype=torch.bool)
    for check in bounds:
        if check["kind"] == "hard":
            within &= torch.tensor(check["within"], dtype=torch.bool)
    return constraints, bounds, within
