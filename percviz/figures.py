"""Figures: an interactive plotly figure for every view, and the static publication figure.

- Plotly (the app): :func:`image_figure`, :func:`map_figure`, :func:`channels_figure`,
  :func:`curve_figure`, :func:`views_figures` (all views of one pair), :func:`grid_figure`
  (several attacks on one image, seed 000 Fig. 3 layout).
- Matplotlib (papers): :func:`render_figure` writes PDF / SVG / PNG (300 dpi) in the layout of
  seed 000 Fig. 3 — rows are attacks; columns (a) adversarial image, (b–d) SSIM maps R/G/B,
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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from percviz.explain import CAM_THRESHOLD, NOISE_THRESHOLD, explain_scores
from percviz.views import REGION_COLOURS, REGION_LABELS, ViewArrays, as_hwc, overlay, ssim_maps, to_unit

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from percviz.attacks.base import AttackResult
    from percviz.recipes import Recipe

SSIM_COLORSCALE = "gray"  # dark = distorted, light = untouched (seed 000 Fig. 3)
CAM_COLORSCALE = "jet"  # seed 000 Fig. 3 (e)
DIFF_COLORSCALE = "magma"
CHANNEL_NAMES = ("R", "G", "B")
FIGURE_FORMATS = (".png", ".svg", ".pdf")


# ----------------------------------------------------------------------------- plotly


def _uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def _square_axes(fig: go.Figure, rows: int = 1, cols: int = 1) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
    for i in range(1, rows * cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.update_layout({f"yaxis{suffix}": {"scaleanchor": f"x{suffix}", "scaleratio": 1}})


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        margin={"l": 10, "r": 10, "t": 48, "b": 10},
        height=height,
        template="plotly_white",
    )
    return fig


def image_figure(image: np.ndarray, title: str = "", height: int = 360) -> go.Figure:
    """An ``H×W×3`` image in [0, 1] (shown exactly, no interpolation; hover gives RGB 0–255)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Image(z=_uint8(image), hovertemplate="x %{x}, y %{y}<br>RGB %{z}<extra></extra>"))
    _square_axes(fig)
    return _layout(fig, title, height)


def map_figure(
    values: np.ndarray,
    title: str = "",
    *,
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = SSIM_COLORSCALE,
    colorbar_title: str = "",
    height: int = 360,
) -> go.Figure:
    """One ``H×W`` map as a heat map with a colour bar (hover gives the exact value)."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Heatmap(
            z=np.asarray(values, dtype=np.float32),
            zmin=zmin,
            zmax=zmax,
            colorscale=colorscale,
            colorbar={"title": {"text": colorbar_title, "side": "right"}, "thickness": 12},
            hovertemplate="x %{x}, y %{y}<br>%{z:.4f}<extra></extra>",
        )
    )
    _square_axes(fig)
    return _layout(fig, title, height)


def channels_figure(
    values: np.ndarray,
    title: str = "",
    *,
    zmin: float | None = None,
    zmax: float | None = None,
    colorscale: str = SSIM_COLORSCALE,
    colorbar_title: str = "",
    subtitles: Sequence[str] | None = None,
    height: int = 330,
) -> go.Figure:
    """Three channels of an ``H×W×3`` map side by side on one colour scale (one colour bar)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    arr = np.asarray(values, dtype=np.float32)
    lo = float(arr.min()) if zmin is None else zmin
    hi = float(arr.max()) if zmax is None else zmax
    names = list(subtitles) if subtitles is not None else [f"channel {c}" for c in CHANNEL_NAMES]
    fig = make_subplots(rows=1, cols=3, subplot_titles=names, horizontal_spacing=0.02)
    for c in range(3):
        fig.add_trace(
            go.Heatmap(
                z=arr[..., c],
                coloraxis="coloraxis",
                hovertemplate=f"{CHANNEL_NAMES[c]} · x %{{x}}, y %{{y}}<br>%{{z:.4f}}<extra></extra>",
            ),
            row=1,
            col=c + 1,
        )
    fig.update_layout(
        coloraxis={
            "colorscale": colorscale,
            "cmin": lo,
            "cmax": hi,
            "colorbar": {"title": {"text": colorbar_title, "side": "right"}, "thickness": 12},
        }
    )
    _square_axes(fig, 1, 3)
    return _layout(fig, title, height)


def curve_figure(curve: Mapping[str, Sequence[Any]], title: str = "", height: int = 360) -> go.Figure:
    """Seed 000 Fig. 5: precision, recall, IOU-outside and fraction perturbed vs noise threshold.

    Undefined points (``None``) are gaps; the Table I threshold is marked.
    """
    import plotly.graph_objects as go

    t = list(curve["thresholds"])
    fig = go.Figure()
    for key, name in (
        ("precision", "precision"),
        ("recall", "recall"),
        ("iou", "IOU"),
        ("iou_outside", "IOU outside"),
        ("fraction_perturbed", "fraction of pixels perturbed"),
    ):
        y = [math.nan if v is None else float(v) for v in curve[key]]
        fig.add_trace(go.Scatter(x=t, y=y, mode="lines", name=name, connectgaps=False))
    fig.add_vline(
        x=NOISE_THRESHOLD, line_dash="dot", line_color="grey", annotation_text=f"Table I: {NOISE_THRESHOLD}"
    )
    fig.update_xaxes(title="noise threshold on 1 − SSIM")
    fig.update_yaxes(title="score", range=[0, 1.02])
    _layout(fig, title or "Explainability vs noise threshold (seed 000 §V-B)", height)
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return fig


def region_figure(views: ViewArrays, title: str = "", height: int = 380) -> go.Figure:
    """Noise map N vs CAM region G: TP / FP / FN / TN colours with a legend and hover class."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Image(z=_uint8(views.regions()), hoverinfo="skip"))
    s = views.explain["scores"]
    for key in ("tp", "fp", "fn", "tn"):  # legend entries
        r, g, b = (round(255 * v) for v in REGION_COLOURS[key])
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                marker={"size": 12, "symbol": "square", "color": f"rgb({r},{g},{b})"},
                name=f"{REGION_LABELS[key]} ({s[key]})",
            )
        )
    _square_axes(fig)
    _layout(fig, title or _score_title(s, views.explain["noise_threshold"]), height)
    fig.update_layout(legend={"orientation": "h", "y": -0.05}, showlegend=True)
    return fig


def _fmt(value: float | None, digits: int = 3) -> str:
    return "undefined" if value is None else f"{value:.{digits}f}"


def _score_title(s: Mapping[str, Any], threshold: float) -> str:
    return (
        f"N = (1 − SSIM) > {threshold:g} vs G = CAM > {CAM_THRESHOLD:g} · precision {_fmt(s['precision'])}"
        f" · recall {_fmt(s['recall'])} · IOU outside {_fmt(s['iou_outside'])}"
    )


def views_figures(views: ViewArrays, labels: Sequence[str] | None = None) -> dict[str, go.Figure]:
    """One interactive figure per view of a pair (keys are stable view ids for the app)."""
    c = views.cams

    def name(i: int) -> str:
        return labels[i] if labels is not None and 0 <= i < len(labels) else f"class {i}"

    figs: dict[str, go.Figure] = {
        "original": image_figure(views.original, f"Original · {name(c.label)}"),
        "adversarial": image_figure(views.adversarial, f"Adversarial · {name(c.adv_label)}"),
        "perturbation": image_figure(
            views.perturbation, f"Perturbation × {views.perturbation_gain:g} (grey = no change)"
        ),
        "ssim": channels_figure(
            views.ssim_map,
            f"SSIM maps (mean {views.ssim:.4f}; dark = distorted)",
            zmin=min(float(views.ssim_map.min()), 0.9),
            zmax=1.0,
            colorbar_title="SSIM",
            subtitles=[
                f"{ch} · {float(views.ssim_map[5:-5, 5:-5, i].mean()):.4f}"
                for i, ch in enumerate(CHANNEL_NAMES)
            ],
        ),
        "diff": channels_figure(
            views.diff,
            f"|adversarial − original| (max {float(views.diff.max()) * 255:.1f}/255)",
            zmin=0.0,
            zmax=max(float(views.diff.max()), 1e-6),
            colorscale=DIFF_COLORSCALE,
            colorbar_title="|Δ|",
        ),
        "cam_original": map_figure(
            c.original,
            f"GradCAM++ original · {name(c.label)}",
            zmin=0,
            zmax=1,
            colorscale=CAM_COLORSCALE,
            colorbar_title="CAM",
        ),
        "cam_adversarial": map_figure(
            c.adversarial,
            f"GradCAM++ adversarial · {name(c.adv_label)}",
            zmin=0,
            zmax=1,
            colorscale=CAM_COLORSCALE,
            colorbar_title="CAM",
        ),
        "cam_adversarial_original_class": map_figure(
            c.adversarial_original_class,
            f"GradCAM++ adversarial · original class {name(c.label)}",
            zmin=0,
            zmax=1,
            colorscale=CAM_COLORSCALE,
            colorbar_title="CAM",
        ),
        "cam_overlay_original": image_figure(
            views.cam_overlay("original"), f"GradCAM++ over original · {name(c.label)}"
        ),
        "cam_overlay_adversarial": image_figure(
            views.cam_overlay("adversarial"), f"GradCAM++ over adversarial · {name(c.adv_label)}"
        ),
        "regions": region_figure(views),
        "curve": curve_figure(views.explain["curve"]),
    }
    shared = c.shared()
    figs["cam_shared"] = channels_figure(
        np.stack(shared, axis=-1),
        "Raw GradCAM++ on one shared scale (magnitudes comparable)",
        zmin=0.0,
        zmax=1.0,
        colorscale=CAM_COLORSCALE,
        colorbar_title="CAM / max",
        subtitles=[
            f"original · {name(c.label)}",
            f"adversarial · {name(c.adv_label)}",
            f"adversarial · {name(c.label)}",
        ],
    )
    if views.magnified_original is not None and views.magnification_scale is not None:
        scale = views.magnification_scale
        both = np.concatenate(
            [
                to_unit(views.magnified_original, scale),
                np.ones((views.original.shape[0], 4, 3), np.float32),
                to_unit(views.magnified_adversarial, scale),
            ],  # type: ignore[arg-type]
            axis=1,
        )
        figs["magnification"] = image_figure(
            both,
            f"Adversarial magnification: original | adversarial (one scale {scale[0]:.2f} … {scale[1]:.2f})",
        )
    return figs


# ----------------------------------------------------------------------------- rows (shared)


@dataclass(frozen=True)
class FigureRow:
    """One row of the publication figure (one attack on one image)."""

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

    @property
    def ssim(self) -> float:
        return float(self.ssim_map[5:-5, 5:-5].mean())

    def channel_ssim(self, c: int) -> float:
        return float(self.ssim_map[5:-5, 5:-5, c].mean())


_STRENGTH_PARAMS = {
    "eps": "ε",
    "eps1": "ε₁",
    "eps2": "ε₂",
    "bound": "bound",
    "smooth_alpha": "α",
    "lam": "λ",
    "c": "c",
    "overshoot": "overshoot",
    "target": "target",
}


def _params_text(params: Mapping[str, Any]) -> str:
    """The strength parameters of a run, short (``ε = 0.03, ε₂ = 0.9``)."""
    parts = []
    for key, symbol in _STRENGTH_PARAMS.items():
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, float):
            value = "∞" if math.isinf(value) else f"{value:.3g}"
        parts.append(f"{symbol} = {value}")
    return ", ".join(parts[:3])


def figure_row(
    result: AttackResult, model: torch.nn.Module, index: int = 0, title: str | None = None
) -> FigureRow:
    """A :class:`FigureRow` from an attack result (computes SSIM maps and the original's CAM)."""
    from percviz.attacks.base import get_attack
    from percviz.explain import gradcam_plus_plus
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
        subtitle=_params_text(result.params),
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
    views: ViewArrays, title: str = "", subtitle: str = "", labels: Sequence[str] | None = None
) -> FigureRow:
    """A :class:`FigureRow` from one pair's view arrays (no recomputation)."""
    c = views.cams

    def name(i: int) -> str:
        return labels[i] if labels is not None and 0 <= i < len(labels) else f"class {i}"

    return FigureRow(
        title=title or "adversarial",
        subtitle=subtitle,
        adversarial=views.adversarial,
        original=views.original,
        ssim_map=views.ssim_map,
        cam=c.original,
        before=name(c.label),
        after=name(c.adv_label),
        success=c.label != c.adv_label,
        scores=views.explain["scores"],
    )


# ----------------------------------------------------------------------------- plotly grid


def grid_figure(rows: Sequence[FigureRow], title: str = "") -> go.Figure:
    """Interactive seed 000 Fig. 3 grid: rows = attacks; adversarial, SSIM R/G/B, CAM."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not rows:
        raise ValueError("grid_figure needs at least one row.")
    vmin = _ssim_floor(rows)
    heads = [
        "(a) adversarial",
        "(b) SSIM map R",
        "(c) SSIM map G",
        "(d) SSIM map B",
        "(e) GradCAM++ (original)",
    ]
    titles = [h if i == 0 else "" for i, _ in enumerate(rows) for h in heads]
    fig = make_subplots(
        rows=len(rows),
        cols=5,
        subplot_titles=titles,
        horizontal_spacing=0.01,
        vertical_spacing=0.03,
        row_titles=[f"{r.title}<br>SSIM {r.ssim:.3f}" for r in rows],
    )
    for i, row in enumerate(rows, start=1):
        fig.add_trace(
            go.Image(z=_uint8(row.adversarial), hovertemplate=f"{row.after}<extra></extra>"), row=i, col=1
        )
        for c in range(3):
            fig.add_trace(
                go.Heatmap(
                    z=row.ssim_map[..., c], coloraxis="coloraxis", hovertemplate="%{z:.4f}<extra></extra>"
                ),
                row=i,
                col=c + 2,
            )
        fig.add_trace(go.Image(z=_uint8(overlay(row.original, row.cam)), hoverinfo="skip"), row=i, col=5)
    fig.update_layout(
        coloraxis={
            "colorscale": SSIM_COLORSCALE,
            "cmin": vmin,
            "cmax": 1.0,
            "colorbar": {"title": {"text": "SSIM"}, "thickness": 12},
        }
    )
    _square_axes(fig, len(rows), 5)
    return _layout(fig, title, 60 + 200 * len(rows))


# ----------------------------------------------------------------------------- static figure


def _ssim_floor(rows: Sequence[FigureRow]) -> float:
    """One SSIM colour-scale floor for all rows: a tenth at or below the lowest value, ≤ 0.9."""
    low = min(float(r.ssim_map.min()) for r in rows)
    return float(max(-1.0, min(0.9, math.floor(low * 10.0) / 10.0)))


def render_figure(
    rows: Sequence[FigureRow],
    out_path: str | Path,
    *,
    dpi: int = 300,
    title: str | None = None,
    ssim_floor: float | None = None,
) -> Path:
    """The seed 000 Fig. 3 layout as a static figure; the format follows the suffix (png/svg/pdf).

    Rows are attacks; columns (a) adversarial image, (b–d) SSIM maps R/G/B, (e) GradCAM++ of the
    original over it. One SSIM colour scale (grey, dark = distorted) shared by every SSIM panel
    and one CAM scale (jet, [0, 1]), each with a colour bar; the CAM region ``G`` (CAM > 0.75)
    is outlined in white. Each row is captioned with the attack, its strength parameters, SSIM
    (mean; per channel inside the panels), the prediction before → after, and the seed 000 §V-B
    precision and fraction of pixels perturbed at the Table I noise threshold. PNG at ``dpi``.
    ``ssim_floor`` fixes the bottom of the SSIM scale (default: a tenth at or below the lowest
    value of all rows, at most 0.9); values below it show as black.
    """
    out = Path(out_path)
    fmt = _format(out.suffix)
    fig = _static_figure(rows, dpi, title, ssim_floor)
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
    _save(_static_figure(rows, dpi, title, ssim_floor), buf, _format(fmt), dpi)
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


def _static_figure(rows: Sequence[FigureRow], dpi: int, title: str | None, ssim_floor: float | None) -> Any:
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
    vmin = _ssim_floor(rows) if ssim_floor is None else float(ssim_floor)
    if not -1.0 <= vmin < 1.0:
        raise ValueError(f"ssim_floor must lie in [-1, 1); got {ssim_floor}.")
    ssim_norm, cam_norm = Normalize(vmin, 1.0), Normalize(0.0, 1.0)
    heads = [
        "(a) adversarial",
        "(b) SSIM map, R",
        "(c) SSIM map, G",
        "(d) SSIM map, B",
        "(e) GradCAM++ of original",
    ]

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
                row.ssim_map[..., c], cmap=SSIM_COLORSCALE, norm=ssim_norm, interpolation="nearest"
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
        axes[4].imshow(overlay(row.original, row.cam, 0.5, CAM_COLORSCALE), interpolation="nearest")
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
        ScalarMappable(ssim_norm, colormaps[SSIM_COLORSCALE]),
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
