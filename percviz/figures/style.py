"""What the screen and the printed figures share: colour maps, the SSIM colour scale, the Okabe–Ito
palette and markers, the sweep metrics, and the captions of grid cells."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

SSIM_COLORSCALE = "viridis"  # SSIM maps on screen and in print: dark = distorted, yellow = untouched
#: The SSIM colour maps a figure may use, on screen and in its export alike.
SSIM_COLORMAPS = {
    "viridis": "viridis (as the app)",
    "gray": "grey (as the paper)",
}
CAM_OUTLINE = "white"  # the outline of the CAM region G (CAM > 0.75), on screen and in print
CAM_COLORSCALE = "jet"  # Pochimireddy et al. 2021 Fig. 3 (e)
CAM_ALPHA = 0.45  # opacity of the CAM colour over its image, on screen and in print
DIFF_COLORSCALE = "magma"  # |Δ| maps: black = unchanged, the neutral end
CHANNEL_NAMES = ("R", "G", "B")
FIGURE_FORMATS = (".png", ".svg", ".pdf")
INK = "#1f2430"  # text on charts: the app's text colour (Streamlit's chart theme would make it grey)
ACCENT = "#3b5bdb"  # the original image's colour in charts (and the app's accent)
ADVERSARIAL = "#e8590c"  # the adversarial image's colour in charts


def ssim_floor(*maps: np.ndarray) -> float:
    """Bottom of one SSIM colour scale for all ``maps``: a tenth at or below their lowest value, ≤ 0.9."""
    low = min(float(np.min(m)) for m in maps)
    return float(max(-1.0, min(0.9, math.floor(low * 10.0) / 10.0)))


def class_name(index: int, labels: Sequence[str] | None) -> str:
    """The label of class ``index`` (``"class N"`` without labels or out of their range)."""
    return labels[index] if labels is not None and 0 <= index < len(labels) else f"class {index}"


class HeatScale(NamedTuple):
    """One colour scale shared by every heat-map panel of a figure."""

    zmin: float
    zmax: float
    colorscale: str  # a matplotlib colour-map name
    label: str


Cell = tuple[Literal["image", "heat"], np.ndarray]
"""A grid panel: ``("image", H×W×3 in [0, 1])`` or ``("heat", H×W)`` on the figure's HeatScale."""


def ssim_scale(*maps: np.ndarray, colormap: str = SSIM_COLORSCALE) -> HeatScale:
    """The colour scale of SSIM maps: [:func:`ssim_floor`, 1], dark = distorted, in ``colormap``
    (one of :data:`SSIM_COLORMAPS`)."""
    if colormap not in SSIM_COLORMAPS:
        raise ValueError(f"The SSIM colour map must be one of {', '.join(SSIM_COLORMAPS)}; got {colormap!r}.")
    return HeatScale(ssim_floor(*maps), 1.0, colormap, "SSIM")


def short(text: str, limit: int = 24) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: Okabe & Ito's colour-blind-safe palette (blue, orange, bluish green, vermillion, reddish purple,
#: sky blue, yellow, black): every multi-line chart uses it, with a distinct marker per line too.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MARKERS = (("circle", "o"), ("square", "s"), ("diamond", "D"), ("triangle-up", "^"), ("x", "x"))
SWEEP_METRICS = (  # key in CurveSweep.points, title, unit
    ("fooling_rate", "fooling rate", "%"),
    ("mean_ssim", "mean SSIM", ""),
    ("mean_psnr", "mean PSNR", "dB"),
)


def curve_xy(curve: Any, metric: str) -> tuple[list[float], list[float]]:
    pts = [(float(p["value"]), float(p[metric])) for p in curve.points if p.get(metric) is not None]
    return [x for x, _ in pts], [y for _, y in pts]


def metric_title(metric: str) -> tuple[str, str]:
    for key, title, unit in SWEEP_METRICS:
        if key == metric:
            return title, unit
    raise ValueError(f"metric must be one of {', '.join(k for k, _, _ in SWEEP_METRICS)}; got {metric!r}.")


S1_PRECISION = 1e-12  # |1 − S1| below this is float rounding of an untouched mean: shown as 0


def grid_cell_caption(cell: Any, show_s1: bool = False) -> list[str]:
    """The lines under one grid cell: verdict and class, confidence, SSIM (and 1 − S1, the luminance
    term's loss, when ε1 is swept)."""
    mark = "✔ " if cell.success else ""
    lines = [
        f"{mark}{short(cell.class_name.split(',')[0], 16)}",
        f"{cell.probability:.0%} · SSIM {cell.ssim:.3f}",
    ]
    if show_s1:
        gap = 1.0 - cell.s1
        lines.append("1 − S1 0" if abs(gap) < S1_PRECISION else f"1 − S1 {gap:.1e}")
    return lines
