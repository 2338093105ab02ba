"""Plotly panels (the app): :func:`image_figure`, :func:`heatmap_figure` and :func:`grid_figure` (rows ×
columns, Pochimireddy et al. 2021 Fig. 3 layout), the views of one pair (:func:`perturbation_figure`,
:func:`ssim_figure`, :func:`diff_figure`, :func:`magnification_figure`, :func:`cam_figure`,
:func:`regions_figure`) and :func:`rows_figure`, the screen twin of the publication figure.

Layouts are plain dicts with one hidden, square axis pair per panel: ``make_subplots`` and ``update_*``
are ~10× slower to build, which every Streamlit rerun would feel.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from percviz.analysis.colour import REGION_COLOURS, REGION_LABELS, region_colours, to_unit
from percviz.analysis.explain import CAM_THRESHOLD, NOISE_THRESHOLD, confusion, noise_map
from percviz.analysis.metrics import ssim_interior
from percviz.analysis.views import Views, perturbation_view
from percviz.figures.rows import FigureRow, figure_cells, figure_heads, row_caption
from percviz.figures.style import (
    CAM_COLORSCALE,
    CAM_OUTLINE,
    CHANNEL_NAMES,
    DIFF_COLORSCALE,
    INK,
    SSIM_COLORSCALE,
    Cell,
    HeatScale,
    class_name,
    ssim_scale,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go


_HIDDEN_AXIS: dict[str, Any] = {
    "showticklabels": False,
    "showgrid": False,
    "zeroline": False,
    "ticks": "",
    "showline": False,
}
_LINE_PX = 17  # one line of panel title text (13 px font)
_ROW_GAP_PX = 8


def _uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


_IMAGE_HOVER = "x %{x}, y %{y}<br>RGB %{color[0]}, %{color[1]}, %{color[2]}<extra></extra>"


def png_source(img: np.ndarray) -> str:
    """An ``H×W×3`` image in [0, 1] as a lossless 8-bit PNG data URI for a plotly image trace.

    The browser draws such an image in one step; an image given as ``z`` (a pixel array) is
    painted pixel by pixel: measured in Chromium, three 224×224 panels took 410–650 ms as ``z``
    and 20–45 ms as a PNG source. Hover still reads each pixel's RGB.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_uint8(img), mode="RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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


def _matplotlib_scale(cmap: str, n: int = 33) -> list[list[Any]]:
    """A matplotlib colour map as a plotly colour scale of ``rgb()`` stops (so a bar matches colours made
    by ``overlay``). Plotly's own named scales begin with hex stops such as magma's ``#000004``, which
    Chromium drew pink (Streamlit's theme) or violet: the zero end of a difference map was not black.
    33 stops keep plotly's linear interpolation within 3/255 of viridis and magma (11 were 13/255 off
    viridis), so a heat map on screen and its print in the full colour map look the same."""
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
    outlines: Mapping[tuple[int, int], np.ndarray] | None = None,
) -> go.Figure:
    """Panels in rows × columns (Pochimireddy et al. 2021 Fig. 3 layout; one row is a row of panels).

    Each cell is ``("image", H×W×3)`` with values in [0, 1] (shown exactly, RGB 0–255 on hover)
    or ``("heat", H×W)`` drawn on ``heat``, the one colour scale of all heat cells (one colour
    bar, beside the first row). ``col_titles`` go above the first row, ``row_titles`` (HTML) to
    the left of each row, ``cell_titles`` above every cell (then ``col_titles`` are not drawn).
    ``outlines[(row, col)]`` (an ``H×W`` CAM in [0, 1]) draws the CAM region G's boundary
    (CAM = 0.75) over that cell in :data:`~percviz.figures.style.CAM_OUTLINE`, as print does.
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
        "font": {"color": INK, "size": 13},  # labels in the text colour, ≥ 12 px: readable on a projector
        "margin": {"l": _label_px(row_titles, 13), "r": 0, "t": head, "b": 0},
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
                    13,
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
                        "source": png_source(arr),
                        "xaxis": f"x{ax}",
                        "yaxis": f"y{ax}",
                        "hovertemplate": _IMAGE_HOVER,
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
                        "colorscale": _matplotlib_scale(heat.colorscale),
                        "showscale": not scale_shown,
                        "colorbar": _colorbar(heat.label, h),
                        "xaxis": f"x{ax}",
                        "yaxis": f"y{ax}",
                        "hovertemplate": f"x %{{x}}, y %{{y}}<br>{heat.label} %{{z:.4f}}<extra></extra>",
                    }
                )
                scale_shown = True
            if outlines is not None and (r, c) in outlines:
                data.append(_outline(outlines[(r, c)], ax))
            if cell_titles is not None:
                layout["annotations"].append(_note(cell_titles[r][c], x0 + w / 2, y1, 12))
            elif r == 0 and c < len(col_titles):
                layout["annotations"].append(_note(col_titles[c], x0 + w / 2, 1.0, 13))
    return go.Figure(data=data, layout=layout)


def _outline(cam: np.ndarray, ax: str) -> dict[str, Any]:
    """A contour trace of ``cam`` at :data:`CAM_THRESHOLD` on the axes ``x{ax}``/``y{ax}``."""
    return {
        "type": "contour",
        "z": np.asarray(cam, dtype=np.float32),
        "contours": {"start": CAM_THRESHOLD, "end": CAM_THRESHOLD, "size": 1.0, "coloring": "none"},
        "line": {"color": CAM_OUTLINE, "width": 1.2},
        "showscale": False,
        "hoverinfo": "skip",
        "xaxis": f"x{ax}",
        "yaxis": f"y{ax}",
    }


def image_figure(images: Sequence[np.ndarray], titles: Sequence[str], height: int = 300) -> go.Figure:
    """``H×W×3`` images in [0, 1] side by side, shown exactly (no interpolation; RGB on hover)."""
    return grid_figure([[("image", img) for img in images]], col_titles=titles, height=height)


def heatmap_figure(
    maps: Sequence[np.ndarray], titles: Sequence[str], scale: HeatScale, height: int = 300
) -> go.Figure:
    """``H×W`` maps side by side on one colour scale with one colour bar (value on hover)."""
    return grid_figure([[("heat", m) for m in maps]], col_titles=titles, heat=scale, height=height)


def perturbation_figure(views: Views, gain: float | None = None, height: int = 320) -> go.Figure:
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


def ssim_figure(views: Views, height: int = 300) -> go.Figure:
    """The per-channel SSIM maps (values in [−1, 1], 1 = unchanged) with their means."""
    m = views.ssim_map
    titles = [
        f"SSIM {n} (mean {ssim_interior(m, channels_last=True)[..., c].mean():.4f})"
        for c, n in enumerate(CHANNEL_NAMES)
    ]
    return heatmap_figure([m[..., c] for c in range(3)], titles, ssim_scale(m), height)


def diff_figure(views: Views, height: int = 300) -> go.Figure:
    """Per-channel ``|adversarial − original|`` in [0, 1] units, on [0, its maximum]."""
    top = float(views.diff.max()) or 1.0
    return heatmap_figure(
        [views.diff[..., c] for c in range(3)],
        [f"|Δ| {n}" for n in CHANNEL_NAMES],
        HeatScale(0.0, top, DIFF_COLORSCALE, "|Δ|"),
        height,
    )


def magnification_figure(views: Views, height: int = 340) -> go.Figure:
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
    views: Views,
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
    before, after = class_name(c.label, labels), class_name(c.adv_label, labels)
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


def regions_figure(views: Views, threshold: float = NOISE_THRESHOLD, height: int = 360) -> go.Figure:
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


def _head(text: str) -> str:
    """A column head on one line ("SSIM map R"), or two when it is long ("GradCAM++<br>new class")."""
    return text.replace(", ", "<br>" if len(text) > 16 else " ", 1)


def rows_figure(
    rows: Sequence[FigureRow], cell_px: int = 170, ssim_colormap: str = SSIM_COLORSCALE
) -> go.Figure:
    """The screen twin of :func:`~percviz.figures.publication.render_figure`: the same panels, one
    SSIM scale for all rows in ``ssim_colormap``, the CAM region's outline and the row captions of
    :func:`~percviz.figures.rows.row_caption` — what the export prints."""
    if not rows:
        raise ValueError("rows_figure needs at least one row.")
    heads = [_head(h.split(" ", 1)[1]) for h in figure_heads(rows)]
    titles = ["<br>".join(f"<b>{t}</b>" if bold else t for t, bold in row_caption(r)) for r in rows]
    return grid_figure(
        [figure_cells(r) for r in rows],
        col_titles=heads,
        row_titles=titles,
        cell_px=cell_px,
        heat=ssim_scale(*(r.ssim_map for r in rows), colormap=ssim_colormap),
        outlines={(i, 4): r.cam for i, r in enumerate(rows)},
    )
