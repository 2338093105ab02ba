"""Parameter sweeps: strength-vs-metric curves (Pochimireddy et al. 2021 Fig. 6–9) and the ε1×ε2 grid (Fig. 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from percviz.analysis.metrics import psnr, ssim
from percviz.attacks.base import AttackResult, run_attack
from percviz.evaluation.data import EvalImage
from percviz.evaluation.engine import Evaluation, evaluate
from percviz.evaluation.plan import make_runs
from percviz.evaluation.stats import summarize_rows
from percviz.evaluation.store import RowStore
from percviz.images import to_numpy, to_uint8
from percviz.jsonsafe import json_safe
from percviz.models import Classifier
from percviz.progress import ProgressCallback, emit


@dataclass
class CurveSweep:
    """Strength-vs-metric curves of Pochimireddy et al. 2021 Fig. 6–9: one summary per value of ``param``."""

    attack: str
    param: str
    values: list[float]
    points: list[dict[str, Any]]
    evaluation: Evaluation


def curve_sweep(
    model: Classifier,
    images: Sequence[EvalImage],
    attack: str,
    param: str,
    values: Sequence[float],
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    batch: int = 8,
    store: RowStore | str | Path | None = None,
    explain: bool = False,
    progress: ProgressCallback | None = None,
) -> CurveSweep:
    """Evaluate ``attack`` at each ``param`` value; ``points[i]`` holds the summary at ``values[i]``
    (fooling rate, mean SSIM/PSNR, P_suc, D̄ …) with ``"value"`` added."""
    runs = make_runs([attack], params, {param: list(values)})
    ev = evaluate(
        model, images, runs, seed=seed, batch=batch, store=store, explain=explain, progress=progress
    )
    points = []
    for run in runs:
        group = [r for r in ev.rows if r["params_key"] == run.key]
        if group:
            points.append({"value": json_safe(run.params[param]), **summarize_rows(group)})
    return CurveSweep(attack, param, [float(v) for v in values], points, ev)


@dataclass
class GridCell:
    """One cell of :func:`grid_sweep`: the adversarial image's prediction and quality."""

    row_value: float
    col_value: float
    label: int
    class_name: str
    probability: float
    success: bool
    ssim: float
    psnr: float
    s1: float
    s2: float
    thumbnail: np.ndarray
    """``uint8`` ``h×w×3`` thumbnail of the adversarial image."""


@dataclass
class GridSweep:
    """Pochimireddy et al. 2021 Fig. 1: prediction and SSIM over a grid of two parameters (default ε1 × ε2)."""

    attack: str
    row_param: str
    col_param: str
    row_values: list[float]
    col_values: list[float]
    cells: list[list[GridCell]]
    original_label: int
    original_class: str
    cancelled: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "rows": {"param": self.row_param, "values": self.row_values},
            "cols": {"param": self.col_param, "values": self.col_values},
            "original": {"label": self.original_label, "class": self.original_class},
            "cancelled": self.cancelled,
            "cells": [
                [{k: v for k, v in c.__dict__.items() if k != "thumbnail"} for c in row] for row in self.cells
            ],
        }


def grid_sweep(
    model: Classifier,
    image: np.ndarray | torch.Tensor,
    attack: str = "fpgap",
    rows: tuple[str, Sequence[float]] = ("eps1", (0.0, 0.01, 0.02, 0.05)),
    cols: tuple[str, Sequence[float]] = ("eps2", (0.005, 0.01, 0.02, 0.05)),
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    thumbnail: int = 96,
    progress: ProgressCallback | None = None,
) -> GridSweep:
    """Run ``attack`` on one image for every (row value, col value) pair.

    ``image`` is ``H×W×3`` in [0, 1] or a ``1×3×H×W`` tensor at the model's size. Progress records
    ``{"stage": "cell", "done", "total", "row", "col"}`` (return ``False`` to cancel; the grid is
    then returned with the cells done so far, ``cancelled=True``).
    """
    x = _as_batch(image).to(model.device)
    row_name, row_values = rows
    col_name, col_values = cols
    with torch.no_grad():
        original = int(model(x).argmax(1)[0])
    names = model.labels
    grid: list[list[GridCell]] = []
    total = len(row_values) * len(col_values)
    done = 0
    cancelled = False
    for rv in row_values:
        line: list[GridCell] = []
        for cv in col_values:
            if cancelled:
                break
            run = make_runs([attack], {**dict(params or {}), row_name: rv, col_name: cv})[0]
            inner = (
                None
                if progress is None
                else (lambda rec: progress({"stage": "iteration", "attack": attack, **rec}))
            )
            res = run_attack(attack, model, x, run.params, seed=seed, progress=inner)
            if res.cancelled:
                cancelled = True
                break
            line.append(_cell(model, res, float(rv), float(cv), names, thumbnail))
            done += 1
            if emit(progress, {"stage": "cell", "done": done, "total": total, "row": rv, "col": cv}):
                cancelled = True
        grid.append(line)
        if cancelled:
            break
    return GridSweep(
        attack,
        row_name,
        col_name,
        [float(v) for v in row_values],
        [float(v) for v in col_values],
        grid,
        original,
        names[original],
        cancelled,
    )


@torch.no_grad()
def _cell(
    model: Classifier, res: AttackResult, rv: float, cv: float, names: list[str], size: int
) -> GridCell:
    probs = torch.softmax(model(res.x_adv.to(model.device)).float(), 1)[0].cpu()
    label = int(res.adv_labels[0])
    thumb = torch.nn.functional.interpolate(res.x_adv, size=(size, size), mode="area")
    return GridCell(
        row_value=rv,
        col_value=cv,
        label=label,
        class_name=names[label],
        probability=float(probs[label]),
        success=bool(res.success[0]),
        ssim=float(ssim(res.x.double(), res.x_adv.double())[0]),
        psnr=float(psnr(res.x, res.x_adv)[0]),
        s1=float(res.constraints["s1"][0]),
        s2=float(res.constraints["s2"][0]),
        thumbnail=to_uint8(to_numpy(thumb)[0]),
    )


def _as_batch(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    return image if image.ndim == 4 else image[None]
