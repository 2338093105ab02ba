"""Matplotlib figures for papers, object API only (no pyplot state, safe in a threaded server).

:func:`render_figure` / :func:`export_figure` draw the Pochimireddy et al. 2021 Fig. 3 layout — rows are
attacks; columns (a) adversarial image, (b–d) SSIM maps R/G/B, (e) GradCAM++ — one shared colour
scale per map type with colour bars, each row captioned with its numbers. :func:`export_sweep` and
:func:`export_grid` print the Sweep page's charts and grid; :func:`plot_report` writes the PNG plots
of ``percviz evaluate``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from percviz.analysis.explain import CAM_THRESHOLD
from percviz.analysis.views import (
    LazyViews,
    ViewArrays,
    Views,
)
from percviz.figures.rows import FigureRow, figure_heads, recipe_rows, row_caption, row_from_views
from percviz.figures.style import (
    CAM_COLORSCALE,
    CAM_OUTLINE,
    FIGURE_FORMATS,
    MARKERS,
    OKABE_ITO,
    SSIM_COLORSCALE,
    SWEEP_METRICS,
    curve_xy,
    grid_cell_caption,
    ssim_scale,
)

if TYPE_CHECKING:
    from percviz.recipes import Recipe


def render_figure(
    rows: Sequence[FigureRow],
    out_path: str | Path,
    *,
    dpi: int = 300,
    title: str | None = None,
    ssim_floor: float | None = None,
    ssim_colormap: str = SSIM_COLORSCALE,
) -> Path:
    """The Pochimireddy et al. 2021 Fig. 3 layout as a static figure; the format follows the suffix (png/svg/pdf).

    Rows are attacks; columns (a) adversarial image, (b–d) SSIM maps R/G/B, (e) GradCAM++ of the
    original over it. One SSIM colour scale (``ssim_colormap``: viridis as on screen, or grey as
    the paper's Fig. 3; dark = distorted) shared by every SSIM panel and one CAM scale (jet,
    [0, 1]), each with a colour bar; the CAM region ``G`` (CAM > 0.75) is outlined in white. Each
    row is captioned by :func:`~percviz.figures.rows.row_caption` — the same panels, colours,
    outline and captions as the screen's :func:`~percviz.figures.interactive.rows_figure` — and
    each SSIM panel shows its channel's mean. PNG at ``dpi``. ``ssim_floor`` fixes the bottom of
    the SSIM scale (default: a tenth at or below the lowest value of all rows, at most 0.9);
    values below it show in the scale's darkest colour.
    """
    out = Path(out_path)
    fmt = _format(out.suffix)
    fig = static_figure(rows, dpi, title, ssim_floor, ssim_colormap)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        _save(fig, fh, fmt, dpi)
    return out


def render_recipes(
    recipes: Sequence[Recipe],
    out_path: str | Path,
    device: str | None = None,
    ssim_colormap: str = SSIM_COLORSCALE,
) -> Path:
    """Run each recipe (:func:`~percviz.figures.rows.recipe_rows`) and render their figure
    (``percviz figure``)."""
    return render_figure(recipe_rows(recipes, device), out_path, ssim_colormap=ssim_colormap)


def export_figure(
    source: Sequence[FigureRow] | Views,
    fmt: str = "png",
    *,
    dpi: int = 300,
    title: str | None = None,
    ssim_floor: float | None = None,
    ssim_colormap: str = SSIM_COLORSCALE,
) -> bytes:
    """The publication figure as bytes (``fmt`` png/svg/pdf) from rows or one pair's ViewArrays."""
    rows = [row_from_views(source)] if isinstance(source, ViewArrays | LazyViews) else list(source)
    buf = io.BytesIO()
    _save(static_figure(rows, dpi, title, ssim_floor, ssim_colormap), buf, _format(fmt), dpi)
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
    rows: Sequence[FigureRow],
    dpi: int = 300,
    title: str | None = None,
    floor: float | None = None,
    ssim_colormap: str = SSIM_COLORSCALE,
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
    scale = ssim_scale(*(r.ssim_map for r in rows), colormap=ssim_colormap)
    vmin = scale.zmin if floor is None else float(floor)
    if not -1.0 <= vmin < 1.0:
        raise ValueError(f"ssim_floor must lie in [-1, 1); got {floor}.")
    ssim_norm, cam_norm = Normalize(vmin, 1.0), Normalize(0.0, 1.0)
    heads = figure_heads(rows)

    def box(col: int, row: int) -> tuple[float, float, float, float]:
        left = label_w + col * (panel + gap)
        top = head_h + row * (panel + gap)
        return (left / width, 1 - (top + panel) / height, panel / width, panel / height)

    if title:
        fig.text(0.5, 1 - 0.22 / height, title, ha="center", va="center", fontsize=10, fontweight="bold")
    for r, row in enumerate(rows):
        axes = [fig.add_axes(box(c, r)) for c in range(5)]
        axes[0].imshow(np.clip(row.adversarial, 0, 1), interpolation="nearest")
        for c in range(3):
            axes[c + 1].imshow(
                row.ssim_map[..., c], cmap=scale.colorscale, norm=ssim_norm, interpolation="nearest"
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
        axes[4].contour(row.cam, levels=[CAM_THRESHOLD], colors=CAM_OUTLINE, linewidths=0.6)
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
    ssim_ax = fig.add_axes((left_b + 0.1 * span, bottom, 0.8 * span, 0.09 / height))
    clipped = min(float(r.ssim_map.min()) for r in rows) < vmin
    bar = fig.colorbar(
        ScalarMappable(ssim_norm, colormaps[scale.colorscale]),
        cax=ssim_ax,
        orientation="horizontal",
        extend="min" if clipped else "neither",
    )
    bar.set_label("local SSIM (dark = distorted)", fontsize=7)
    bar.ax.tick_params(labelsize=6.5, width=0.4, length=2)
    bar.outline.set_linewidth(0.4)
    cam_ax = fig.add_axes((left_e + 0.1 * panel / width, bottom, 0.8 * panel / width, 0.09 / height))
    bar = fig.colorbar(
        ScalarMappable(cam_norm, colormaps[CAM_COLORSCALE]), cax=cam_ax, orientation="horizontal"
    )
    bar.set_label(f"GradCAM++ (white: > {CAM_THRESHOLD:g})", fontsize=7)
    bar.set_ticks([0, 0.25, 0.5, 0.75, 1.0])
    bar.ax.tick_params(labelsize=6.5, width=0.4, length=2)
    bar.outline.set_linewidth(0.4)
    return fig


def _row_caption(
    fig: Any, row: FigureRow, ax_box: tuple[float, float, float, float], label_frac: float
) -> None:
    """The text left of a row: :func:`~percviz.figures.rows.row_caption`'s lines (as on screen)."""
    x = 0.012
    y_top = ax_box[1] + ax_box[3]
    step = 0.155 / fig.get_figheight()
    y = y_top - 0.05 / fig.get_figheight()
    for text, bold in row_caption(row):
        style = {"fontsize": 8.5, "fontweight": "bold"} if bold else {"fontsize": 7, "color": "0.2"}
        fig.text(x, y, text, ha="left", va="top", **style)
        y -= step * (1.15 if bold else 1.0)


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
            xs, ys = curve_xy(c, metric)
            ax.plot(
                xs,
                [100 * y for y in ys] if unit == "%" else ys,
                color=OKABE_ITO[i % len(OKABE_ITO)],
                marker=MARKERS[i % len(MARKERS)][1],
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
            ax = fig.add_axes((left / width, 1 - (top + panel) / height, panel / width, panel / height))
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
