"""The run template of the regression attacks (Balda, Behboodi and Mathar, "Perturbation Analysis of
Learning Algorithms", §III): :func:`run_regression_attack`, the counterpart of
:func:`~percviz.attacks.base.run_attack` for ``f: R^M → R^K``. It shares its steps with the
classification template (:mod:`percviz.attacks.template`: validation, caps, seeding, pass counts,
clipping, the bound re-check) and adds the reference output ``f(x)`` and the output distortion
metrics of a :class:`RegressionResult`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from percviz.attacks._norms import TINY, lp_norm, parse_p
from percviz.attacks.base import ProgressCallback
from percviz.attacks.checks import measure_constraints
from percviz.attacks.schema import ParamValue
from percviz.attacks.template import execute_run, judge_run, start_run, stop_clock
from percviz.errors import ParameterError, check_finite_output
from percviz.limits import Limits


@dataclass
class RegressionResult:
    """Everything one regression run produced, on CPU.

    ``output`` / ``output_adv`` are ``f(x)`` and ``f(x_adv)`` (``N×3×H×W`` or ``N×K``).
    ``metrics`` has one dict per image: input ``psnr``, ``ssim`` (images ≥ 11 px), ``l2``, ``linf``,
    ``l0``, the realised budget ``eta_norm`` (``‖η‖_p`` in the attack's norm) and ``eta_norm_ratio``
    (over ε), and output ``output_mse``, ``output_psnr``, ``output_l2``. ``within_bound`` is per image:
    every hard constraint of the attack holds, re-measured against the original.
    """

    attack_id: str
    params: dict[str, ParamValue]
    seed: int
    x: torch.Tensor
    x_adv: torch.Tensor
    output: torch.Tensor
    output_adv: torch.Tensor
    history: list[dict[str, Any]]
    forward_passes: int
    backward_passes: int
    wall_time: float
    constraints: dict[str, list[float]]
    metrics: list[dict[str, float]]
    info: dict[str, Any]
    cancelled: bool
    device: str
    within_bound: torch.Tensor
    bounds: list[dict[str, Any]] = field(default_factory=list)


def output_peak(output: torch.Tensor, image_output: bool) -> torch.Tensor:
    """Peak value for output PSNR per image: 1 for [0, 1] images, ``max|f(x)|`` for vectors."""
    if image_output:
        return torch.ones(output.shape[0], dtype=torch.float64, device=output.device)
    return output.detach().double().flatten(1).abs().amax(1).clamp_min(TINY)


@torch.no_grad()
def output_metrics(
    output: torch.Tensor, output_adv: torch.Tensor, image_output: bool
) -> dict[str, torch.Tensor]:
    """``output_mse``, ``output_psnr`` (dB, ``10·log10(peak²/MSE)``, §VI-B) and ``output_l2`` per image."""
    diff = (output_adv.double() - output.double()).flatten(1)
    mse = diff.pow(2).mean(1)
    peak = output_peak(output, image_output)
    psnr = torch.where(
        mse > 0, 10.0 * torch.log10(peak**2 / mse.clamp_min(1e-300)), torch.full_like(mse, math.inf)
    )
    return {"output_mse": mse, "output_psnr": psnr, "output_l2": diff.norm(dim=1)}


@torch.no_grad()
def _input_metrics(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    from percviz.analysis.metrics import perturbation_norms, psnr, ssim

    norms = perturbation_norms(x, x_adv)
    out = {"psnr": psnr(x, x_adv), "l2": norms["l2"], "linf": norms["linf"], "l0": norms["l0"]}
    if min(x.shape[-2:]) >= 11:
        out["ssim"] = ssim(x.float(), x_adv.float())
    return out


@torch.no_grad()
def budget_use(x: torch.Tensor, x_adv: torch.Tensor, values: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """``eta_norm``: the realised ``‖x_adv − x‖_p`` in the attack's own norm (its ``p``; L∞ for the
    pixel attacks), after clipping to [0, 1]; ``eta_norm_ratio``: that over ε (1 = the whole budget
    used; clipping makes it smaller, which the Fig. 4 curve shows by plotting against it)."""
    p = parse_p(values.get("p", "inf"))
    realised = lp_norm((x_adv.double() - x.double()), p)
    eps = float(values.get("eps", 0.0))
    ratio = realised / eps if eps > 0 else torch.zeros_like(realised)
    return {"eta_norm": realised, "eta_norm_ratio": ratio}


def _check_regressor(model: torch.nn.Module) -> None:
    if getattr(model, "kind", "classifier") != "regressor":
        raise ParameterError(
            "Regression attacks need a regression model (autoencoder, embedding:<classifier> or "
            "file:PATH); this model is a classifier."
        )


def run_regression_attack(
    attack_id: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    limits: Limits | None = None,
) -> RegressionResult:
    """Run one regression attack on ``x`` (``N×3×H×W`` in [0, 1]) against a regressor ``model``.

    The attack function receives ``f(x)`` in the ``labels`` slot (the reference output, the
    paper's ``y ≈ f(x)``). The input tensor is never modified; ``limits`` (default: this
    process's) caps the loop and cost parameters.
    """
    run = start_run(
        attack_id,
        "regression",
        model,
        x,
        params,
        seed=seed,
        progress=progress,
        limits=limits,
        check_model=_check_regressor,
    )
    ctx, x0, values = run.ctx, run.x0, run.values
    y0 = ctx.logits(x0)
    check_finite_output(y0, str(getattr(getattr(model, "spec", None), "title", type(model).__name__)))
    output, x_adv = execute_run(run, y0)
    y_adv = ctx.logits(x_adv)
    wall = stop_clock(run)
    constraints, bounds, within = judge_run(run, model, x_adv, output, measure_constraints(x0, x_adv))
    columns = {
        **_input_metrics(x0, x_adv),
        **budget_use(x0, x_adv, values),
        **output_metrics(y0, y_adv, y0.shape == x0.shape),
    }
    metrics = [{k: float(v[i]) for k, v in columns.items()} for i in range(x0.shape[0])]
    return RegressionResult(
        attack_id=attack_id,
        params=values,
        seed=seed,
        x=x0.cpu(),
        x_adv=x_adv.cpu(),
        output=y0.cpu(),
        output_adv=y_adv.cpu(),
        history=ctx.history,
        forward_passes=ctx.forward_passes,
        backward_passes=ctx.backward_passes,
        wall_time=wall,
        constraints=constraints,
        metrics=metrics,
        info=output.info,
        cancelled=ctx.cancelled,
        device=str(ctx.device),
        within_bound=within,
        bounds=bounds,
    )
