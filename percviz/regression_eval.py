"""Regression runs end to end and the output-PSNR curve of Balda, Behboodi and Mathar,
"Perturbation Analysis of Learning Algorithms", §VI-B Fig. 4: mean output PSNR of
``f(x)`` vs ``f(x + η)`` against ε, one curve per attack, with the random baselines at the same budget.

Shared by the CLI (``percviz attack`` / ``percviz evaluate`` on a regressor) and the app's
Regression page; nothing here prints or imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from percviz.attacks.base import get_attack
from percviz.attacks.regression_run import RegressionResult, run_regression_attack
from percviz.errors import ParameterError
from percviz.models.regression import Regressor
from percviz.progress import ProgressCallback

FIGURE_SOURCE = "Balda, Behboodi, Mathar, Perturbation Analysis of Learning Algorithms, §VI-B Fig. 4"
DASH_BASELINE = "dash"
DEFAULT_EPS: dict[str, tuple[float, ...]] = {  # the Fig. 4 ε grid per norm (CLI and app)
    "2": (0.25, 0.5, 1.0, 2.0, 4.0),
    "inf": (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
    "1": (0.25, 0.5, 1.0),
}


@dataclass(frozen=True)
class CurveRun:
    """One curve: an attack with its fixed parameters (ε is swept)."""

    attack: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> bool:
        return self.attack == "reg_random"

    def label(self) -> str:
        """``quadratic-ℓ2``, ``linear-ℓ∞-10``, ``linear-pixel-100``, ``random-ℓ2`` (the paper's names)."""
        values = get_attack(self.attack).validate(self.params)
        norm = {"1": "ℓ1", "2": "ℓ2", "inf": "ℓ∞"}.get(str(values.get("p")), "")
        if self.attack == "reg_quad":
            return f"quadratic-{norm}"
        if self.attack == "reg_linear":
            return f"linear-{norm}-{values['steps']}"
        if self.attack == "reg_subset":
            return f"linear-pixel-{values['subsets']}"
        if values.get("subsets"):
            return f"random-pixel-{values['subsets']}"
        return f"random-{norm}"


def default_runs(p: str = "2") -> list[CurveRun]:
    """The paper's set for one norm: quadratic-ℓp, linear-ℓp-10 and random-ℓp (Fig. 4a/b)."""
    return [
        CurveRun("reg_quad", {"p": p}),
        CurveRun("reg_linear", {"p": p, "steps": 10}),
        CurveRun("reg_random", {"p": p}),
    ]


def with_baselines(runs: Sequence[CurveRun]) -> list[CurveRun]:
    """``runs`` plus the matching random baseline for each norm / pixel count not yet present."""
    out = list(runs)
    have = {r.label() for r in out}
    for run in runs:
        values = get_attack(run.attack).validate(run.params)
        if run.attack == "reg_subset":
            base = CurveRun("reg_random", {"p": "inf", "subsets": values["subsets"]})
        elif run.attack in ("reg_quad", "reg_linear"):
            base = CurveRun("reg_random", {"p": values["p"]})
        else:
            continue
        if base.label() not in have:
            have.add(base.label())
            out.append(base)
    return out


def output_psnr_curve(
    model: Regressor,
    x: torch.Tensor,
    runs: Sequence[CurveRun],
    eps_values: Sequence[float],
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """One row per (curve, ε): means over the images of output PSNR / MSE and input PSNR / SSIM.

    ``x`` is ``N×3×H×W`` in [0, 1] at the model's input size. Every run's hard bounds are
    re-checked by the template; ``within_bound`` says whether all images kept them. ``progress``
    gets ``{"done", "total", "label", "eps"}`` after each point and may return False to stop.
    """
    if not eps_values:
        raise ParameterError("The curve needs at least one ε value.")
    rows: list[dict[str, Any]] = []
    total = len(runs) * len(eps_values)
    for run in runs:
        for eps in eps_values:
            point = {"done": len(rows), "total": total, "label": run.label(), "eps": float(eps)}
            inner = (lambda _record, point=point: progress(point)) if progress is not None else None
            result = run_regression_attack(
                run.attack, model, x, {**run.params, "eps": eps}, seed=seed, progress=inner
            )
            if result.cancelled:  # stopped inside this point: it is not a point of the curve
                return rows
            rows.append(curve_row(run, float(eps), result))
            if progress is not None and progress({**point, "done": len(rows)}) is False:
                return rows
    return rows


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if len(finite) == len(values) else float("inf")


def curve_row(run: CurveRun, eps: float, result: RegressionResult) -> dict[str, Any]:
    """One point of the curve from one run over the image batch."""
    column = {k: [m[k] for m in result.metrics] for k in result.metrics[0]}
    return {
        "label": run.label(),
        "attack": run.attack,
        "params": {k: v for k, v in result.params.items()},
        "baseline": run.baseline,
        "eps": eps,
        "images": len(result.metrics),
        "output_psnr": _mean(column["output_psnr"]),
        "output_mse": float(np.mean(column["output_mse"])),
        "input_psnr": _mean(column["psnr"]),
        "input_ssim": float(np.mean(column["ssim"])) if "ssim" in column else None,
        "realised_norm": float(np.mean(column["eta_norm"])),
        "realised_norm_ratio": float(np.mean(column["eta_norm_ratio"])),
        "output_psnr_per_image": column["output_psnr"],
        "within_bound": bool(result.within_bound.all()),
        "forward_passes": result.forward_passes,
        "backward_passes": result.backward_passes,
    }


AGAINST = {
    "realised": "realised ‖η‖_p after clipping to [0, 1] (mean over the photos)",
    "nominal": "ε (budget ‖η‖_p)",
}


def fig4_figure(
    rows: Sequence[Mapping[str, Any]], title: str = "", height: int = 420, against: str = "realised"
) -> go.Figure:
    """Output PSNR (dB) against the realised ‖η‖_p (default; clipping to [0, 1] leaves some attacks
    below ε) or the nominal ε, one line per curve; random baselines dashed (Fig. 4)."""
    fig = go.Figure()
    for label in dict.fromkeys(r["label"] for r in rows):
        points = sorted((r for r in rows if r["label"] == label), key=lambda r: r["eps"])
        fig.add_trace(
            go.Scatter(
                x=[r.get("realised_norm", r["eps"]) if against == "realised" else r["eps"] for r in points],
                y=[r["output_psnr"] if np.isfinite(r["output_psnr"]) else None for r in points],
                mode="lines+markers",
                name=label,
                line={"dash": DASH_BASELINE if points[0]["baseline"] else "solid", "width": 2},
                customdata=[
                    [r["input_psnr"], r["output_mse"], r["eps"], r.get("realised_norm", r["eps"])]
                    for r in points
                ],
                hovertemplate="ε=%{customdata[2]:.4g}, realised ‖η‖_p=%{customdata[3]:.4g}"
                "<br>output PSNR %{y:.2f} dB<br>input PSNR %{customdata[0]:.2f} dB"
                "<br>output MSE %{customdata[1]:.3g}<extra>" + label + "</extra>",
            )
        )
    fig.update_layout(
        title={"text": title or "Output PSNR against the budget ε", "x": 0.0, "font": {"size": 15}},
        height=height,
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        xaxis={"title": AGAINST[against]},
        yaxis={"title": "output PSNR of f(x+η) vs f(x) (dB)"},
        legend={"orientation": "v", "x": 1.0, "xanchor": "right", "y": 1.0},
    )
    return fig


def export_fig4(fig: go.Figure, fmt: str) -> bytes:
    """The figure as ``pdf``, ``svg`` or ``png`` bytes (plotly's kaleido renderer)."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in ("pdf", "svg", "png"):
        raise ParameterError(f"Figures export as pdf, svg or png; got '{fmt}'.")
    return fig.to_image(
        format=fmt, width=720, height=int(fig.layout.height or 420), scale=2 if fmt == "png" else 1
    )


def output_array(output: torch.Tensor) -> np.ndarray:
    """``f(x)`` of image 0 as saved: ``H×W×3`` float32 for image outputs, ``(K,)`` for vectors."""
    first = output[0].detach().float().cpu()
    return (first.permute(1, 2, 0) if first.ndim == 3 else first).numpy().astype(np.float32)


def report(
    result: RegressionResult, model: Regressor, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What ``result.json`` holds for image 0 of a regression run."""
    from percviz.jsonsafe import json_safe

    return {
        "model": model.spec.id,
        "model_kind": "regressor",
        "output": model.spec.output,
        "attack": result.attack_id,
        "params": json_safe(result.params),
        "seed": result.seed,
        "metrics": json_safe(result.metrics[0]),
        "within_bound": bool(result.within_bound[0]),
        "bounds": json_safe(
            [
                {**b, "values": b["values"][:1], "excess": b["excess"][:1], "within": b["within"][:1]}
                for b in result.bounds
            ]
        ),
        "constraints": {k: json_safe(v[0]) for k, v in result.constraints.items()},
        "forward_passes": result.forward_passes,
        "backward_passes": result.backward_passes,
        "wall_time_s": result.wall_time,
        "cancelled": result.cancelled,
        "device": result.device,
        "info": json_safe(result.info),
        "history": json_safe(result.history),
        **(extra or {}),
    }


def write_curve(out: Path, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> list[str]:
    """``curve.json``, ``curve.csv``, ``fig4.pdf`` and ``fig4.svg`` in ``out``; returns the file names."""
    import csv
    import json

    from percviz.jsonsafe import json_safe

    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(
        json.dumps(json_safe({**meta, "source": FIGURE_SOURCE, "rows": list(rows)}), indent=2) + "\n",
        encoding="utf-8",
    )
    columns = [
        "label",
        "attack",
        "eps",
        "images",
        "output_psnr",
        "output_mse",
        "input_psnr",
        "input_ssim",
        "realised_norm",
        "realised_norm_ratio",
        "within_bound",
    ]
    with (out / "curve.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([r.get(c) for c in columns])
    fig = fig4_figure(rows, title=f"Output PSNR against ε — {meta.get('model', '')}")
    names = ["curve.json", "curve.csv"]
    for fmt in ("pdf", "svg"):
        (out / f"fig4.{fmt}").write_bytes(export_fig4(fig, fmt))
        names.append(f"fig4.{fmt}")
    return names
