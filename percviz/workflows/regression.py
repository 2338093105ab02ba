"""The Regression page's jobs, defined in the core: one attack on one image, and the Fig. 4 curve.

Balda, Behboodi and Mathar, "Perturbation Analysis of Learning Algorithms" (§III–IV, §VI-B). Both
return ``work(progress)`` job bodies that the page queues like Explore's (progress, Cancel, the
per-session cap and the time limit of :mod:`percviz.serving.jobs`); every cap is checked here, before
anything runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from percviz import regression_eval as rev
from percviz.attacks.base import get_attack
from percviz.attacks.caps import check_params
from percviz.attacks.regression_run import run_regression_attack
from percviz.errors import ParameterError
from percviz.images import fit_to_model, load_sample, to_tensor
from percviz.limits import Limits, current_limits
from percviz.models.regression import Regressor
from percviz.progress import ProgressCallback


@dataclass
class RegressionRun:
    """One finished (or cancelled) regression attack on one image, as CPU arrays and numbers."""

    model_id: str
    attack: str
    params: dict[str, Any]
    seed: int
    x_adv: np.ndarray
    out: np.ndarray
    out_adv: np.ndarray
    metrics: dict[str, float]
    within: bool
    info: dict[str, Any]
    passes: tuple[int, int]
    wall: float
    cancelled: bool


def regression_work(
    model: Regressor,
    pixels: np.ndarray,
    attack: str,
    params: dict[str, Any],
    seed: int,
    limits: Limits | None = None,
) -> Callable[[ProgressCallback], RegressionRun]:
    """One regression attack on ``pixels`` (``H×W×3`` in [0, 1] at the model's size); the
    parameters are validated and capped now (a refusal raises :class:`ParameterError`)."""
    spec = get_attack(attack)
    values = spec.validate(params)
    check_params(spec, values, limits or current_limits())
    x = to_tensor(pixels, model.device)

    def work(progress: ProgressCallback) -> RegressionRun:
        result = run_regression_attack(attack, model, x, values, seed=seed, progress=progress)
        return RegressionRun(
            model_id=model.spec.id,
            attack=attack,
            params=dict(values),
            seed=seed,
            x_adv=result.x_adv[0].permute(1, 2, 0).numpy(),
            out=rev.output_array(result.output),
            out_adv=rev.output_array(result.output_adv),
            metrics=result.metrics[0],
            within=bool(result.within_bound[0]),
            info={k: v for k, v in result.info.items() if not isinstance(v, list) or len(v) <= 3},
            passes=(result.forward_passes, result.backward_passes),
            wall=result.wall_time,
            cancelled=result.cancelled,
        )

    return work


@dataclass
class RegressionCurve:
    """The Fig. 4 rows (one per curve and ε) of one model; ``cancelled`` when stopped early."""

    model_id: str
    rows: list[dict[str, Any]]
    cancelled: bool


def curve_work(
    model: Regressor,
    samples: Sequence[str],
    p: str,
    eps_values: Sequence[float],
    seed: int = 0,
    limits: Limits | None = None,
) -> Callable[[ProgressCallback], RegressionCurve]:
    """Output PSNR against ε for the bundled photos ``samples`` (Fig. 4: quadratic-ℓp, linear-ℓp-10
    and random-ℓp). Refused now, with one sentence, when there is no photo or ε, an ε is not a
    finite non-negative number, or runs × ε values × photos exceeds the sweep-cell cap."""
    limits = limits or current_limits()
    eps = [float(v) for v in eps_values] or list(rev.DEFAULT_EPS[p])
    if not samples:
        raise ParameterError("Choose at least one photo.")
    if any(not np.isfinite(v) or v < 0 for v in eps):
        raise ParameterError("Every ε must be a finite number ≥ 0.")
    runs = rev.default_runs(p)
    cells = len(runs) * len(eps) * len(samples)
    if cells > limits.max_sweep_cells:
        raise ParameterError(
            f"The curve would run {cells} attacks ({len(runs)} curves × {len(eps)} ε values × "
            f"{len(samples)} photos); at most {limits.max_sweep_cells} are allowed here."
        )
    for run in runs:
        check_params(get_attack(run.attack), {**run.params, "eps": max(eps)}, limits)
    size = model.input_size
    x = torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, size), model.device) for n in samples])

    def work(progress: ProgressCallback) -> RegressionCurve:
        stopped = False

        def report(record: dict[str, Any]) -> bool:
            nonlocal stopped
            keep_going = progress(record) is not False
            stopped = stopped or not keep_going
            return keep_going

        rows = rev.output_psnr_curve(model, x, runs, eps, seed=seed, progress=report)
        return RegressionCurve(model.spec.id, rows, stopped)

    return work
