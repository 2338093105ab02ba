"""Figures: an interactive plotly figure for every view, and the static publication figure.

- Plotly (the app, one set of builders): panels :func:`image_figure`, :func:`heatmap_figure` and
  :func:`grid_figure` (rows × columns, Pochimireddy et al. 2021 Fig. 3 layout); the views of one pair
  :func:`perturbation_figure`, :func:`ssim_figure`, :func:`diff_figure`,
  :func:`magnification_figure`, :func:`cam_figure`, :func:`regions_figure`; charts
  :func:`curve_figure` (Pochimireddy et al. 2021 Fig. 5) and :func:`history_figure`.
  Layouts are plain dicts with one hidden, square axis pair per panel: ``make_subplots`` and
  ``update_*`` are ~10× slower to build, which every Streamlit rerun would feel.
- Matplotlib (papers): :func:`render_figure` writes PDF / SVG / PNG (300 dpi) in the layout of
  Pochimireddy et al. 2021 Fig. 3 — rows are attacks; columns (a) adversarial image, (b–d) SSIM maps R/G/B,
  (e) GradCAM++ of the original — one shared colour scale per map type with colour bars, and
  each row captioned with its numbers (SSIM, predictions, §V-B precision). Uses the object API
  (no pyplot state), so it is safe in a threaded server. :func:`render_recipes` runs recipes
  first (the CLI's ``percviz figure``).
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

from percviz.analysis.explain import CAM_THRESHOLD, NOISE_THRESHOLD, confusion, explain_scores, noise_map
from percviz.analysis.metrics import ssim_interior
from percviz.analysis.views import (
    REGION_COLOURS,
    REGION_LABELS,
    ViewArrays,
    as_hwc,
    overlay,
    perturbation_view,
    region_colours,
    ssim_maps,
    to_unit,
)
from percviz.evaluation import run_label

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from percviz.attacks.base import AttackResult
    from percviz.recipes import Recipe

SSIM_COLORSCALE = "Viridis"  # interactive SSIM maps: dark = distorted, yellow = untouched
SSIM_PRINT_COLORMAP = "gray"  # the static figure: dark = distorted (Pochimireddy et al. 2021 Fig. 3)
CAM_COLORSCALE = "jet"  # Pochimireddy et al. 2021 Fig. 3 (e)
CAM_ALPHA = 0.45  # opacity of the CAM colour over its image, on screen and in print
DIFF_COLORSCALE = "Magma"
CHANNEL_NAMES = ("R", "G", "B")
FIGURE_FORMATS = (".png", ".svg", ".pdf")


def ssim_floor(*maps: np.ndarray) -> float:
    """Bottom of one SSIM colour scale for all ``maps``: a tenth at or below their lowest value, ≤ 0.9."""
    low = min(float(np.min(m)) for m in maps)
    return float(max(-1.0, min(0.9, math.floor(low * 10.0) / 10.0)))


def _class_name(index: int, labels: Sequence[str] | None) -> str:
    return labels[index] if labels is not None and 0 <= index < len(labels) else f"class {index}"


# ----------------------------------------------------------------------------- plotly panels


class HeatScale(NamedTuple):
    """One colour scale shared by every heat-map panel of a figure."""

    zmin: float
    zmax: float
    colorscale: str
    label: str


Cell = tuple[Literal["image", "heat"], np.ndarray]
"""A grid panel: ``("image", H×W×3 in [0, 1])`` or ``("heat", H×W)`` on the figure's HeatScale."""

_HIDDEN_AXIS: dict[str, Any] = {
    "showticklabels": False,
    "showgrid": False,
    "zeroline": False,
    "ticks": "",
    "showline": False,
}
_LINE_PX = 15  # one line of panel title text
_ROW_GAP_PX = 8


def ssim_scale(*maps: np.ndarray) -> HeatScale:
    """The colour scale of SSIM maps: [:func:`ssim_floor`, 1], dark = distorted."""
    return HeatScale(ssim_floor(*maps), 1.0, SSIM_COLORSCALE, "SSIM")


def _uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _domain(a: float, b: float) -> list[float]:
    return [min(max(a, 0.0), 1.0), min(max(b, 0.0), 1.0)]


def _note(text: str, x: float, y: float, size: int, **place: Any) -> dict[str, Any]:
    """A text annotation at ``(x, y)`` in paper coordinates (centred above the point by default)."""
    return {
        "text": text,
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": size},
        **place,
    }


def _colorbar(title: str, length: float) -> dict[str, Any]:
    return {
        "title": {"text": title, "side": "right"},
        "thickness": 12,
        "len": length,
        "y": 1.0,
        "yanchor": "top",
    }


def _matplotlib_scale(cmap: str, n: int = 11) -> list[list[Any]]:
    """A matplotlib colour map as a plotly colour scale (so a bar matches colours made by ``overlay``)."""
    from matplotlib import colormaps

    stops = np.linspace(0.0, 1.0, n)
    rgb = np.rint(colormaps[cmap](stops)[:, :3] * 255).astype(int)
    return [[float(t), f"rgb({r},{g},{b})"] for t, (r, g, b) in zip(stops, rgb, strict=True)]


def _label_px(labels: Sequence[str], font_px: int = 12) -> int:
    """Left margin (px) that holds the longest line of the HTML ``labels`` (0 without labels)."""
    import re

    lines = [re.sub(r"<[^>]+>", "", line) for text in labels for line in text.split("<br>")]
    if not lines:
        return 0
    return math.ceil(0.62 * font_px * max(len(line) for line in lines)) + 12


def grid_figure(
    cells: Sequence[Sequence[Cell]],
    *,
    col_titles: Sequence[str] = (),
    row_titles: Sequence[str] = (),
    cell_titles: Sequence[Sequence[str]] | None = None,
    heat: HeatScale | None = None,
    cell_px: int = 150,
    height: int | None = None,
) -> go.Figure:
    """Panels in rows × columns (Pochimireddy et al. 2021 Fig. 3 layout; one row is a row of panels).

    Each cell is ``("image", H×W×3)`` with values in [0, 1] (shown exactly, RGB 0–255 on hover)
    or ``("heat", H×W)`` drawn on ``heat``, the one colour scale of all heat cells (one colour
    bar, beside the first row). ``col_titles`` go above the first row, ``row_titles`` (HTML) to
    the left of each row, ``cell_titles`` above every cell (then ``col_titles`` are not drawn).
    The height is ``height`` px, or ``cell_px`` per row plus the title bands.
    """
    import plotly.graph_objects as go

    if not cells or not any(cells):
        raise ValueError("grid_figure needs at least one row.")
    n_rows, n_cols = len(cells), max(len(r) for r in cells)
    if cell_titles is not None:
        lines = max(t.count("<br>") + 1 for row in cell_titles for t in row)
        head, gap_px = _LINE_PX * lines + 4, _LINE_PX * lines + 4
    elif col_titles:
        head, gap_px = _LINE_PX * max(t.count("<br>") + 1 for t in col_titles) + 11, _ROW_GAP_PX
    else:
        head, gap_px = 4, _ROW_GAP_PX
    if height is None:
        height = n_rows * cell_px + (n_rows - 1) * gap_px + head
    plot_px = max(height - head, 1)
    left = 0.0
    gap_x, gap_y = 0.012, gap_px / plot_px
    w = (1 - left - gap_x * (n_cols - 1)) / n_cols
    h = (1 - gap_y * (n_rows - 1)) / n_rows
    layout: dict[str, Any] = {
        "height": int(height),
        "margin": {"l": _label_px(row_titles), "r": 0, "t": head, "b": 0},
        "plot_bgcolor": "white",
        "showlegend": False,
        "annotations": [],
    }
    data: list[dict[str, Any]] = []
    scale_shown = False
    for r, row in enumerate(cells):
        y1 = 1 - r * (h + gap_y)
        if r < len(row_titles):
            layout["annotations"].append(
                _note(
                    row_titles[r],
                    0.0,
                    y1 - h / 2,
                    12,
                    xanchor="right",
                    yanchor="middle",
                    align="right",
                    xshift=-6,
                )
            )
        for c, (kind, arr) in enumerate(row):
            i = r * n_cols + c
            ax = "" if i == 0 else str(i + 1)
            x0 = left + c * (w + gap_x)
            layout[f"xaxis{ax}"] = {
                **_HIDDEN_AXIS,
                "domain": _domain(x0, x0 + w),
                "anchor": f"y{ax}",
                "constrain": "domain",
            }
            layout[f"yaxis{ax}"] = {
                **_HIDDEN_AXIS,
                "domain": _domain(y1 - h, y1),
                "anchor": f"x{ax}",
                "scaleanchor": f"x{ax}",
                "constrain": "domain",
            }
            if kind == "image":
                data.append(
                    {
                        "type": "image",
                        "z": _uint8(arr),
                        "xaxis": f"x{ax}",
                        "yaxis": f"y{ax}",
                        "hovertemplate": "x %{x}, y %{y}<br>RGB %{z}<extra></extra>",
                    }
                )
            else:
                if heat is None:
                    raise ValueError("Heat-map cells need a HeatScale (heat=…).")
                layout[f"yaxis{ax}"]["autorange"] = "reversed"
                data.append(
                    {
                        "type": "heatmap",
                        "z": np.asarray(arr, dtype=np.float32),
                        "zmin": heat.zmin,
                        "zmax": heat.zmax,
                        "colorscale": heat.colorscale,
                        "showscale": not scale_shown,
                        "colorbar": _colorbar(heat.label, h),
                        "xaxis": f"x{ax}",
                        "yaxis": f"y{ax}",
                        "hovertemplate": f"x %{{x}}, y %{{y}}<br>{heat.label} %{{z:.4f}}<extra></extra>",
                    }
                )
                scale_shown = True
            if cell_titles is not None:
                layout["annotations"].append(_note(cell_titles[r][c], x0 + w / 2, y1, 11))
            elif r == 0 and c < len(col_titles):
                layout["annotations"].append(_note(col_titles[c], x0 + w / 2, 1.0, 13))
    return go.Figure(data=data, layout=layout)


def image_figure(images: Sequence[np.ndarray], titles: Sequence[str], height: int = 300) -> go.Figure:
    """``H×W×3`` images in [0, 1] side by side, shown exactly (no interpolation; RGB on hover)."""
    return grid_figure([[("image", img) for img in images]], col_titles=titles, height=height)


def heatmap_figure(
    maps: Sequence[np.ndarray], titles: Sequence[str], scale: HeatScale, height: int = 300
) -> go.Figure:
    """``H×W`` maps side by side on one colour scale with one colour bar (value on hover)."""
    return grid_figure([[("heat", m) for m in maps]], col_titles=titles, heat=scale, height=height)


# ----------------------------------------------------------------------------- views of one pair


def perturbation_figure(views: ViewArrays, gain: float | None = None, height: int = 320) -> go.Figure:
    """Original | perturbation ``0.5 + gain·(adversarial − original)`` | adversarial.

    ``gain=None`` uses the pair's automatic gain (the largest 1-2-5 value that clips nothing).
    """
    if gain is None or gain == views.perturbation_gain:
        view, gain = views.perturbation, views.perturbation_gain
    else:
        view, gain = perturbation_view(views.original, views.adversarial, gain)
    return image_figure(
        [views.original, view, views.adversarial],
        ["original", f"perturbation × {gain:g} (grey = 0)", "adversarial"],
        height,
    )


def ssim_figure(views: ViewArrays, height: int = 300) -> go.Figure:
    """The per-channel SSIM maps (values in [−1, 1], 1 = unchanged) with their means."""
    m = views.ssim_map
    titles = [
        f"SSIM {n} (mean {ssim_interior(m, channels_last=True)[..., c].mean():.4f})"
        for c, n in enumerate(CHANNEL_NAMES)
    ]
    return heatmap_figure([m[..., c] for c in range(3)], titles, ssim_scale(m), height)


def diff_figure(views: ViewArrays, height: int = 300) -> go.Figure:
    """Per-channel ``|adversarial − original|`` in [0, 1] units, on [0, its maximum]."""
    top = float(views.diff.max()) or 1.0
    return heatmap_figure(
        [views.diff[..., c] for c in range(3)],
        [f"|Δ| {n}" for n in CHANNEL_NAMES],
        HeatScale(0.0, top, DIFF_COLORSCALE, "|Δ|"),
        height,
    )


def magnification_figure(views: ViewArrays, height: int = 340) -> go.Figure:
    """Adversarial magnification of both images on their one shared display scale (Zhang et al. 2020 App. 1)."""
    scale = views.magnification_scale
    if views.magnified_original is None or views.magnified_adversarial is None or scale is None:
        raise ValueError("Magnification was not computed for this pair.")
    return image_figure(
        [to_unit(views.magnified_original, scale), to_unit(views.magnified_adversarial, scale)],
        ["original, magnified", "adversarial, magnified"],
        height,
    )


def cam_figure(
    views: ViewArrays,
    *,
    alpha: float = 0.45,
    shared: bool = False,
    labels: Sequence[str] | None = None,
    height: int = 340,
) -> go.Figure:
    """GradCAM++ over its image: the original for its class, the adversarial for its new class
    and for the original class, with a colour bar of the CAM scale.

    ``shared=False``: each map min–max normalised to [0, 1] (where the model looks, not how
    strongly). ``shared=True``: the raw maps divided by their common maximum
    (:meth:`PairCams.shared`), so a response that weakens or grows after the attack shows; each
    title then gives that map's peak on the common scale. ``alpha`` is the colour's opacity.
    """
    c = views.cams
    before, after = _class_name(c.label, labels), _class_name(c.adv_label, labels)
    which = ("original", "adversarial", "adversarial_original_class")
    titles = [f"original → {before}", f"adversarial → {after}", f"adversarial, for {before}"]
    if shared:
        peaks = [float(m.max()) for m in c.shared()]
        titles = [f"{t} · peak {p:.2f}" for t, p in zip(titles, peaks, strict=True)]
    fig = image_figure([views.cam_overlay(w, alpha, shared=shared) for w in which], titles, height)
    bar = "GradCAM++ ÷ common max" if shared else "GradCAM++ (min–max)"
    fig.add_trace(  # a trace without points that carries the colour bar of the overlay colours
        {
            "type": "scatter",
            "x": [None],
            "y": [None],
            "xaxis": "x3",
            "yaxis": "y3",
            "mode": "markers",
            "hoverinfo": "skip",
            "marker": {
                "color": [0.0],
                "cmin": 0.0,
                "cmax": 1.0,
                "colorscale": _matplotlib_scale(CAM_COLORSCALE),
                "showscale": True,
                "colorbar": _colorbar(bar, 1.0),
            },
        }
    )
    return fig


def regions_figure(views: ViewArrays, threshold: float = NOISE_THRESHOLD, height: int = 360) -> go.Figure:
    """Pochimireddy et al. 2021 §V-B: noise map ``N = mean(1 − SSIM map) > threshold`` against the CAM region
    ``G`` (the original's CAM above its threshold) as TP / FP / FN / TN colours; the legend gives
    each class's pixel count and share of the image."""
    noise = noise_map(views.ssim_map, threshold)
    counts = confusion(noise, views.region)
    total = noise.size
    fig = image_figure(
        [region_colours(noise, views.region)], [f"N at threshold {threshold:g} vs CAM region G"], height
    )
    for key in ("tp", "fp", "fn", "tn"):
        r, g, b = (round(255 * v) for v in REGION_COLOURS[key])
        fig.add_trace(
            {
                "type": "scatter",
                "x": [None],
                "y": [None],
                "mode": "markers",
                "marker": {
                    "size": 11,
                    "symbol": "square",
                    "color": f"rgb({r},{g},{b})",
                    "line": {"width": 1, "color": "#999"},
                },
                "name": f"{REGION_LABELS[key]} ({counts[key]} px, {counts[key] / total:.1%})",
            }
        )
    fig.update_layout(
        showlegend=True,
        legend={"orientation": "h", "x": 0, "y": -0.02, "yanchor": "top", "font": {"size": 11}},
    )
    return fig


# ----------------------------------------------------------------------------- charts


def _chart_layout(title: str, height: int, x_title: str, y_title: str = "") -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 36, "b": 10},
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 13}},
        "template": "plotly_white",
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}},
        "legend": {"orientation": "h", "y": -0.3, "font": {"size": 11}},
    }


_CURVE_SCORES = (  # key, name, colour (Okabe–Ito), shown at first
    ("precision", "precision", "#0072B2", True),
    ("recall", "recall", "#E69F00", True),
    ("iou", "IOU", "#009E73", True),
    ("iou_outside", "IOU outside", "#D55E00", True),
    ("fraction_perturbed", "pixels perturbed", "#7f7f7f", False),
)


def curve_figure(
    curve: Mapping[str, Sequence[Any]], threshold: float = NOISE_THRESHOLD, height: int = 300
) -> go.Figure:
    """Pochimireddy et al. 2021 Fig. 5: precision, recall, IOU and IOU-outside against the noise threshold.

    ``curve`` is :func:`percviz.analysis.explain.explain_curve`'s dict (scores in [0, 1]). Undefined
    values (``None``, a 0/0 ratio) are gaps, never zeros. The fraction of pixels perturbed is in
    the legend, hidden until clicked. A dashed line marks ``threshold``, a dotted one Table I's.
    The x axis ends a little after the last threshold that still leaves a pixel in N (beyond it
    every score is 0 or undefined), or after the two marked thresholds if they lie further.
    """
    import plotly.graph_objects as go

    t = [float(v) for v in curve["thresholds"]]
    data = [
        {
            "type": "scatter",
            "x": t,
            "y": [None if v is None else float(v) for v in curve[key]],
            "mode": "lines+markers",
            "marker": {"size": 3},
            "line": {"color": colour, "width": 2},
            "name": name,
            "connectgaps": False,
            "visible": True if shown else "legendonly",
            "hovertemplate": f"{name} %{{y:.3f}} at threshold %{{x:.3g}}<extra></extra>",
        }
        for key, name, colour, shown in _CURVE_SCORES
    ]
    layout = _chart_layout(
        "Scores vs noise threshold (Pochimireddy et al. 2021 Fig. 5)",
        height,
        "noise threshold on 1 − SSIM",
        "score",
    )
    layout["yaxis"]["range"] = [0, 1.02]
    active = [x for x, f in zip(t, curve["fraction_perturbed"], strict=True) if f]
    right = max(active[-1] if active else 0.0, threshold, NOISE_THRESHOLD)
    end = min(t[-1], right * 1.1) if t else 1.0
    layout["xaxis"]["range"] = [0, end]
    marks = [(NOISE_THRESHOLD, "#999", "dot", f"Table I {NOISE_THRESHOLD:g}")]
    if threshold != NOISE_THRESHOLD:
        marks.append((threshold, "#333", "dash", f"{threshold:g}"))
    line = {"type": "line", "xref": "x", "yref": "paper", "y0": 0, "y1": 1}
    layout["shapes"] = [
        {**line, "x0": x, "x1": x, "line": {"color": colour, "dash": dash, "width": 1}}
        for x, colour, dash, _ in marks
    ]
    layout["annotations"] = [
        {
            "text": text,
            "x": x,
            "y": 1.0,
            "xref": "x",
            "yref": "paper",
            "xanchor": "left" if x < end / 2 else "right",  # the label stays inside the axes
            "yanchor": "top",
            "xshift": 3 if x < end / 2 else -3,
            "showarrow": False,
            "font": {"size": 10, "color": colour},
        }
        for x, colour, _, text in marks
    ]
    return go.Figure(data=data, layout=layout)


def history_figure(history: Sequence[Mapping[str, Any]], height: int = 220) -> go.Figure:
    """The attack's objective per iteration, as reported through its progress callback."""
    import plotly.graph_objects as go

    points = [
        (h.get("iteration", i + 1), h["loss"])
        for i, h in enumerate(history)
        if isinstance(h.get("loss"), int | float)
    ]
    trace = {
        "type": "scatter",
        "x": [p[0] for p in points],
        "y": [p[1] for p in points],
        "mode": "lines+markers",
        "line": {"color": "#3b5bdb"},
    }
    return go.Figure(data=[trace], layout=_chart_layout("objective per iteration", height, "iteration"))


# ----------------------------------------------------------------------------- rows (shared)


CamOf = Literal["original", "adversarial"]
CAM_HEADS: dict[str, str] = {
    "original": "GradCAM++ of original",
    "adversarial": "GradCAM++, new class",
}


@dataclass(frozen=True)
class FigureRow:
    """One row of the publication figure (one attack on one image).

    ``cam`` is the min–max GradCAM++ map (``H×W`` in [0, 1]) shown in column (e) over the image
    named by ``cam_of``: the original for its class (Pochimireddy et al. 2021 Fig. 3) or the adversarial image
    for its new class (what Compare shows on screen).
    """

    title: str
    adversarial: np.ndarray
    ssim_map: np.ndarray
    cam: np.ndarray
    original: np.ndarray
    subtitle: str = ""
    before: str = ""
    after: str = ""
    success: bool | None = None
    scores: Mapping[str, Any] = field(default_factory=dict)
    cam_of: CamOf = "original"

    @property
    def ssim(self) -> float:
        return float(ssim_interior(self.ssim_map, channels_last=True).mean())

    def channel_ssim(self, c: int) -> float:
        return float(ssim_interior(self.ssim_map, channels_last=True)[..., c].mean())

    def cam_overlay(self, alpha: float = CAM_ALPHA) -> np.ndarray:
        """Column (e): ``cam`` in the jet colour map blended over its image, ``H×W×3`` in [0, 1]."""
        base = self.original if self.cam_of == "original" else self.adversarial
        return overlay(base, self.cam, alpha, CAM_COLORSCALE)


def figure_row(
    result: AttackResult, model: torch.nn.Module, index: int = 0, title: str | None = None
) -> FigureRow:
    """A :class:`FigureRow` from an attack result (computes SSIM maps and the original's CAM)."""
    from percviz.analysis.explain import gradcam_plus_plus
    from percviz.attacks.base import get_attack
    from percviz.models import predict

    x, x_adv = result.x[index : index + 1], result.x_adv[index : index + 1]
    smap = ssim_maps(x, x_adv)
    cam = gradcam_plus_plus(model, x).cam[0]
    p0, p1 = predict(model, x, 1)[0][0], predict(model, x_adv, 1)[0][0]  # type: ignore[arg-type]
    try:
        name = get_attack(result.attack_id).title
    except Exception:
        name = result.attack_id
    return FigureRow(
        title=title or name,
        subtitle=run_label(result.attack_id, result.params, with_attack=False),
        adversarial=as_hwc(x_adv),
        original=as_hwc(x),
        ssim_map=smap,
        cam=cam,
        before=f"{p0.label} ({p0.probability:.2f})",
        after=f"{p1.label} ({p1.probability:.2f})",
        success=bool(result.success[index]),
        scores=explain_scores(smap, cam),
    )


def row_from_views(
    views: ViewArrays,
    title: str = "",
    subtitle: str = "",
    labels: Sequence[str] | None = None,
    cam: CamOf = "original",
) -> FigureRow:
    """A :class:`FigureRow` from one pair's view arrays (no recomputation).

    ``cam`` picks column (e): the original's CAM for its class, or the adversarial image's CAM
    for its new class. The §V-B scores always use the original's CAM region (Pochimireddy et al. 2021 §V-B).
    """
    if cam not in CAM_HEADS:
        raise ValueError(f"cam must be one of {', '.join(CAM_HEADS)}; got {cam!r}.")
    c = views.cams
    return FigureRow(
        title=title or "adversarial",
        subtitle=subtitle,
        adversarial=views.adversarial,
        original=views.original,
        ssim_map=views.ssim_map,
        cam=c.original if cam == "original" else c.adversarial,
        before=_class_name(c.label, labels),
        after=_class_name(c.adv_label, labels),
        success=c.label != c.adv_label,
        scores=views.explain["scores"],
        cam_of=cam,
    )


def figure_cells(row: FigureRow) -> list[Cell]:
    """The five panels of one row, shared by the screen (:func:`rows_figure`) and the static figure:
    adversarial, SSIM maps R/G/B, column (e)'s CAM overlay."""
    return [
        ("image", row.adversarial),
        *[("heat", row.ssim_map[..., c]) for c in range(3)],
        ("image", row.cam_overlay()),
    ]


def figure_heads(rows: Sequence[FigureRow]) -> list[str]:
    """Column titles (a)–(e); (e) names whose CAM it shows."""
    kinds = {r.cam_of for r in rows}
    cam = CAM_HEADS[kinds.pop()] if len(kinds) == 1 else "GradCAM++"
    return ["(a) adversarial", "(b) SSIM map, R", "(c) SSIM map, G", "(d) SSIM map, B", f"(e) {cam}"]


def rows_figure(rows: Sequence[FigureRow], row_titles: Sequence[str] = (), cell_px: int = 170) -> go.Figure:
    """The interactive twin of :func:`render_figure`: the same panels (one SSIM scale for all rows)."""
    if not rows:
        raise ValueError("rows_figure needs at least one row.")
    heads = [h.split(" ", 1)[1].replace(", ", " ", 1) for h in figure_heads(rows)]
    return grid_figure(
        [figure_cells(r) for r in rows],
        col_titles=heads,
        row_titles=row_titles or [f"<b>{r.title}</b>" for r in rows],
        cell_px=cell_px,
        heat=ssim_scale(*(r.ssim_map for r in rows)),
    )


# ----------------------------------------------------------------------------- static figure


def render_figure(
    rows: Sequence[FigureRow],
    out_path: str | Path,
    *,
    dpi: int = 300,
    title: str | None = None,
    ssim_floor: float | None = None,
) -> Path:
    """The Pochimireddy et al. 2021 Fig. 3 layout as a static figure; the format follows the suffix (png/svg/pdf).

    Rows are attacks; columns (a) adversarial image, (b–d) SSIM maps R/G/B, (e) GradCAM++ of the
    original over it. One SSIM colour scale (grey, dark = distorted) shared by every SSIM panel
    and one CAM scale (jet, [0, 1]), each with a colour bar; the CAM region ``G`` (CAM > 0.75)
    is outlined in white. Each row is captioned with the attack, its strength parameters, SSIM
    (mean; per channel inside the panels), the prediction before → after, and the Pochimireddy et al. 2021 §V-B
    precision and fraction of pixels perturbed at the Table I noise threshold. PNG at ``dpi``.
    ``ssim_floor`` fixes the bottom of the SSIM scale (default: a tenth at or below the lowest
    value of all rows, at most 0.9); values below it show as black.
    """
    out = Path(out_path)
    fmt = _format(out.suffix)
    fig = static_figure(rows, dpi, title, ssim_floor)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        _save(fig, fh, fmt, dpi)
    return out


def export_figure(
    source: Sequence[FigureRow] | ViewArrays,
    fmt: str = "png",
    *,
    dpi: int = 300,
    title: str | None = None,
    ssim_floor: float | None = None,
) -> bytes:
    """The publication figure as bytes (``fmt`` png/svg/pdf) from rows or one pair's ViewArrays."""
    rows = [row_from_views(source)] if isinstance(source, ViewArrays) else list(source)
    buf = io.BytesIO()
    _save(static_figure(rows, dpi, title, ssim_floor), buf, _format(fmt), dpi)
    return buf.getvalue()


def _format(suffix: str) -> str:
    fmt = suffix.lower().lstrip(".")
    if f".{fmt}" not in FIGURE_FORMATS:
        raise ValueError(f"Figure files end in .png, .svg or .pdf; got '{suffix}'.")
    return fmt


def _save(fig: Any, fh: Any, fmt: str, dpi: int) -> None:
    metadata: dict[str, Any] = {"Creator": "percviz"}
    if fmt in ("pdf", "svg"):
        metadata["Date"] = None  # reproducible files
    fig.savefig(fh, format=fmt, dpi=dpi, metadata=metadata, facecolor="white")


def static_figure(
    rows: Sequence[FigureRow], dpi: int = 300, title: str | None = None, floor: float | None = None
) -> Any:
    """The matplotlib ``Figure`` that :func:`render_figure` and :func:`export_figure` save."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("render_figure needs at least one row.")
    n = len(rows)
    panel = 1.55  # inches
    label_w, gap, cbar_h = 1.75, 0.06, 0.5
    head_h = 0.42 if title is None else 0.68
    width = label_w + 5 * panel + 5 * gap + 0.15
    height = head_h + n * (panel + gap) + cbar_h + 0.35
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    vmin = ssim_floor(*(r.ssim_map for r in rows)) if floor is None else float(floor)
    if not -1.0 <= vmin < 1.0:
        raise ValueError(f"ssim_floor must lie in [-1, 1); got {floor}.")
    ssim_norm, cam_norm = Normalize(vmin, 1.0), Normalize(0.0, 1.0)
    heads = figure_heads(rows)

    def box(col: int, row: int) -> list[float]:
        left = label_w + col * (panel + gap)
        top = head_h + row * (panel + gap)
        return [left / width, 1 - (top + panel) / height, panel / width, panel / height]

    if title:
        fig.text(0.5, 1 - 0.22 / height, title, ha="center", va="center", fontsize=10, fontweight="bold")
    for r, row in enumerate(rows):
        axes = [fig.add_axes(box(c, r)) for c in range(5)]
        axes[0].imshow(np.clip(row.adversarial, 0, 1), interpolation="nearest")
        for c in range(3):
            axes[c + 1].imshow(
                row.ssim_map[..., c], cmap=SSIM_PRINT_COLORMAP, norm=ssim_norm, interpolation="nearest"
            )
            axes[c + 1].text(
                0.04,
                0.04,
                f"{row.channel_ssim(c):.3f}",
                transform=axes[c + 1].transAxes,
                fontsize=6.5,
                color="black",
                va="bottom",
                ha="left",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        axes[4].imshow(row.cam_overlay(), interpolation="nearest")
        axes[4].contour(row.cam, levels=[CAM_THRESHOLD], colors="white", linewidths=0.6)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.4)
                spine.set_color("0.3")
        if r == 0:
            for ax, head in zip(axes, heads, strict=True):
                ax.set_title(head, fontsize=7.5, pad=4)
        _row_caption(fig, row, box(0, r), label_w / width)
    # colour bars under the SSIM columns and the CAM column
    bottom = (cbar_h + 0.35 - 0.28) / height
    left_b, left_e = box(1, 0)[0], box(4, 0)[0]
    span = (3 * panel + 2 * gap) / width
    ssim_ax = fig.add_axes([left_b + 0.1 * span, bottom, 0.8 * span, 0.09 / height])
    clipped = min(float(r.ssim_map.min()) for r in rows) < vmin
    bar = fig.colorbar(
        ScalarMappable(ssim_norm, colormaps[SSIM_PRINT_COLORMAP]),
        cax=ssim_ax,
        orientation="horizontal",
        extend="min" if clipped else "neither",
    )
    bar.set_label("local SSIM (dark = distorted)", fontsize=7)
    bar.ax.tick_params(labelsize=6.5, width=0.4, length=2)
    bar.outline.set_linewidth(0.4)
    cam_ax = fig.add_axes([left_e + 0.1 * panel / width, bottom, 0.8 * panel / width, 0.09 / height])
    bar = fig.colorbar(
        ScalarMappable(cam_norm, colormaps[CAM_COLORSCALE]), cax=cam_ax, orientation="horizontal"
    )
    bar.set_label(f"GradCAM++ (white: > {CAM_THRESHOLD:g})", fontsize=7)
    bar.set_ticks([0, 0.25, 0.5, 0.75, 1.0])
    bar.ax.tick_params(labelsize=6.5, width=0.4, length=2)
    bar.outline.set_linewidth(0.4)
    return fig


def _row_caption(fig: Any, row: FigureRow, ax_box: list[float], label_frac: float) -> None:
    """The text left of a row: attack, parameters, SSIM, prediction change, precision."""
    x = 0.012
    y_top = ax_box[1] + ax_box[3]
    lines: list[tuple[str, dict[str, Any]]] = [
        (part, {"fontsize": 8.5, "fontweight": "bold"}) for part in textwrap.wrap(row.title, 21) or [""]
    ]
    if row.subtitle:
        lines.append((row.subtitle, {"fontsize": 7, "color": "0.25"}))
    lines.append((f"SSIM {row.ssim:.3f}", {"fontsize": 7.5}))
    if row.before or row.after:
        lines.append((_short(row.before), {"fontsize": 7, "color": "0.2"}))
        verdict = "" if row.success is None else ("  ✓ fooled" if row.success else "  ✗ not fooled")
        lines.append(("→ " + _short(row.after) + verdict, {"fontsize": 7, "color": "0.2"}))
    if row.scores:
        precision = row.scores.get("precision")
        text = "— (0/0)" if precision is None else f"{precision:.2f}"
        lines.append((f"precision {text} @ {NOISE_THRESHOLD:g}", {"fontsize": 7, "color": "0.2"}))
        frac = 100 * float(row.scores["fraction_perturbed"])
        digits = 1 if frac >= 1 or frac == 0 else 2
        lines.append((f"pixels perturbed {frac:.{digits}f}%", {"fontsize": 7, "color": "0.2"}))
    step = 0.155 / fig.get_figheight()
    y = y_top - 0.05 / fig.get_figheight()
    for text, kw in lines:
        fig.text(x, y, text, ha="left", va="top", **kw)
        y -= step * (1.15 if kw.get("fontweight") == "bold" else 1.0)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_recipes(recipes: Sequence[Recipe], out_path: str | Path, device: str | None = None) -> Path:
    """Run each recipe (one row each) and render the publication figure (``percviz figure``)."""
    from dataclasses import replace

    from percviz.pipeline import run_recipe

    rows = []
    for recipe in recipes:
        outcome = run_recipe(replace(recipe, device=device) if device else recipe, check_hash=True)
        rows.append(figure_row(outcome.result, outcome.model))
    return render_figure(rows, out_path)


def transfer_figure(matrix: Mapping[str, Any], titles: Mapping[str, str] | None = None) -> Any:
    """Heat map of a transfer matrix (``TransferMatrix.as_dict()``): source rows × target columns.

    Each cell is the fooling rate on the target of examples made on the source, in percent; the
    diagonal is the white-box rate. Cells not computed are left blank.
    """
    import plotly.graph_objects as go

    names = titles or {}
    sources = [names.get(s, s) for s in matrix["sources"]]
    targets = [names.get(t, t) for t in matrix["targets"]]
    z = [[None if v is None else 100.0 * v for v in row] for row in matrix["fooling_rate"]]
    text = [["" if v is None else f"{v:.0f}%" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=targets,
            y=sources,
            zmin=0,
            zmax=100,
            colorscale="Reds",
            text=text,
            texttemplate="%{text}",
            hovertemplate="made on %{y}<br>classified by %{x}<br>fooling rate %{z:.1f}%<extra></extra>",
            colorbar={"title": "fooling %"},
        )
    )
    n = len(matrix.get("images", []))
    fig.update_layout(
        title={"text": f"Transfer matrix: {matrix['attack']} on {n} images", "font": {"size": 14}},
        xaxis={"title": "target model (classifies)", "side": "bottom"},
        yaxis={"title": "source model (attacked)", "autorange": "reversed"},
        height=120 + 90 * len(sources),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig


# ----------------------------------------------------------------------------- sweeps

#: Okabe & Ito's colour-blind-safe palette (blue, orange, bluish green, vermillion, reddish purple,
#: sky blue, yellow, black): every multi-line chart uses it, with a distinct marker per line too.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
_MARKERS = (("circle", "o"), ("square", "s"), ("diamond", "D"), ("triangle-up", "^"), ("x", "x"))
SWEEP_METRICS = (  # key in CurveSweep.points, title, unit
    ("fooling_rate", "fooling rate", "%"),
    ("mean_ssim", "mean SSIM", ""),
    ("mean_psnr", "mean PSNR", "dB"),
)


def _curve_xy(curve: Any, metric: str) -> tuple[list[float], list[float]]:
    pts = [(float(p["value"]), float(p[metric])) for p in curve.points if p.get(metric) is not None]
    return [x for x, _ in pts], [y for _, y in pts]


def _metric(metric: str) -> tuple[str, str]:
    for key, title, unit in SWEEP_METRICS:
        if key == metric:
            return title, unit
    raise ValueError(f"metric must be one of {', '.join(k for k, _, _ in SWEEP_METRICS)}; got {metric!r}.")


def sweep_figure(
    curves: Sequence[Any], metric: str, names: Mapping[str, str], x_label: str, height: int = 300
) -> go.Figure:
    """One metric of :class:`percviz.evaluation.CurveSweep` results against the swept value, one
    line per attack (``names``: attack id → title) in the Okabe–Ito colours with distinct markers
    (Pochimireddy et al. 2021 Fig. 6–9)."""
    import plotly.graph_objects as go

    title, unit = _metric(metric)
    data = []
    for i, c in enumerate(curves):
        xs, ys = _curve_xy(c, metric)
        data.append(
            {
                "type": "scatter",
                "x": xs,
                "y": ys,
                "mode": "lines+markers",
                "name": names.get(c.attack, c.attack),
                "line": {"color": OKABE_ITO[i % len(OKABE_ITO)], "width": 2},
                "marker": {"symbol": _MARKERS[i % len(_MARKERS)][0], "size": 8},
                "hovertemplate": f"%{{x:.4g}}: %{{y:{'.1%' if unit == '%' else '.4g'}}}<extra>%{{fullData.name}}</extra>",
            }
        )
    y_title = title + (f" ({unit})" if unit and unit != "%" else "")
    layout = _chart_layout(y_title, height, x_label, y_title)
    layout["margin"]["b"] = 60
    layout["legend"]["y"] = -0.35
    if unit == "%":
        layout["yaxis"].update(range=[0, 1.02], tickformat=".0%")
    return go.Figure(data=data, layout=layout)


def export_sweep(
    curves: Sequence[Any], names: Mapping[str, str], x_label: str, fmt: str = "png", *, dpi: int = 200
) -> bytes:
    """The three sweep charts (fooling rate, mean SSIM, mean PSNR) side by side as PNG/SVG/PDF,
    drawn like the screen's (same colours, markers, labels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    fig = Figure(figsize=(11.0, 3.4), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, (metric, title, unit) in zip(axes, SWEEP_METRICS, strict=True):
        for i, c in enumerate(curves):
            xs, ys = _curve_xy(c, metric)
            ax.plot(
                xs,
                [100 * y for y in ys] if unit == "%" else ys,
                color=OKABE_ITO[i % len(OKABE_ITO)],
                marker=_MARKERS[i % len(_MARKERS)][1],
                label=names.get(c.attack, c.attack),
                linewidth=1.6,
                markersize=5,
            )
        ax.set_title(title + (f" ({unit})" if unit and unit != "%" else ""), fontsize=10)
        ax.set_xlabel(x_label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, linewidth=0.5)
        if unit == "%":
            ax.set_ylim(0, 102)
            ax.yaxis.set_major_formatter(PercentFormatter())
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.9, bottom=0.3, wspace=0.28)
    buf = io.BytesIO()
    _save(fig, buf, _format(fmt), dpi)
    return buf.getvalue()


def grid_cell_caption(cell: Any, show_s1: bool = False) -> list[str]:
    """The lines under one grid cell: verdict and class, confidence, SSIM (and 1 − S1, the luminance
    term's loss, when ε1 is swept)."""
    mark = "✔ " if cell.success else ""
    lines = [
        f"{mark}{_short(cell.class_name.split(',')[0], 16)}",
        f"{cell.probability:.0%} · SSIM {cell.ssim:.3f}",
    ]
    if show_s1:
        lines.append(f"1 − S1 {1.0 - cell.s1:.1e}")
    return lines


def export_grid(grid: Any, row_label: str, col_label: str, fmt: str = "png", *, dpi: int = 200) -> bytes:
    """A :class:`percviz.evaluation.GridSweep` (Pochimireddy et al. 2021 Fig. 1) as PNG/SVG/PDF: the
    adversarial thumbnails with the same captions as on screen."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in grid.cells if r]
    if not rows:
        raise ValueError("The grid has no finished cells.")
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    show_s1 = "eps1" in (grid.row_param, grid.col_param)
    panel, cap = 1.35, 0.5 if show_s1 else 0.38
    width, height = 1.1 + n_cols * (panel + 0.1), 0.45 + n_rows * (panel + cap)
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            left = 1.1 + c * (panel + 0.1)
            top = 0.45 + r * (panel + cap)
            ax = fig.add_axes([left / width, 1 - (top + panel) / height, panel / width, panel / height])
            ax.imshow(cell.thumbnail, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("\n".join(grid_cell_caption(cell, show_s1)), fontsize=6.5, labelpad=2)
            if r == 0:
                ax.set_title(f"{col_label} = {cell.col_value:.4g}", fontsize=7.5, pad=3)
            if c == 0:
                ax.set_ylabel(f"{row_label} = {cell.row_value:.4g}", fontsize=7.5)
    buf = io.BytesIO()
    _save(fig, buf, _format(fmt), dpi)
    return buf.getvalue()
